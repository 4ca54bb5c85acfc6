"""`DDGSDTrainer`: data-distortion guided self-distillation between two distorted views of each input."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ..distortion import distort
from ..losses import hard_label_loss, logit_mse, soft_target_kl
from ..modeling import LossTerm
from .ddgsd_config import DDGSDConfig
from .distillation_trainer import DistillationTrainer


def linear_mmd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared maximum mean discrepancy with the linear kernel: `||mean(a) - mean(b)||^2` for rows `(N, H)`."""
    return ((a.float().mean(0) - b.float().mean(0)) ** 2).sum()


class DDGSDTrainer(DistillationTrainer):
    """DDGSD (Xu and Liu 2019): every batch is distorted twice (`args.ddgsd_distortion` at `args.ddgsd_rate`), both
    views run through the network in one forward, and the loss ties them together. Logs `loss_ce` (both views),
    `loss_views` (the two KL directions) and `loss_mmd`. No teacher is given or run.

    Args:
        model (`PreTrainedModel`): the network.
        teacher_model: must be `None`.
        args (`DDGSDConfig`): training and loss configuration.
        processing_class: the tokenizer (its special tokens are never distorted; `"mask"` uses its mask token).
    """

    method_name = "ddgsd"
    config_class = DDGSDConfig
    uses_teacher = False

    def __init__(self, model: PreTrainedModel, teacher_model: None = None, args: DDGSDConfig | None = None, **kwargs):
        super().__init__(model, teacher_model, args, **kwargs)
        tokenizer = self.processing_class
        if tokenizer is None or not hasattr(tokenizer, "all_special_ids"):
            raise ValueError("DDGSD distorts token ids and needs the tokenizer: pass processing_class=tokenizer")
        if args.ddgsd_distortion in ("mask", "mixed") and tokenizer.mask_token_id is None:
            raise ValueError(f"ddgsd_distortion {args.ddgsd_distortion!r} needs a mask token; the tokenizer has none")
        self._special_ids = list(tokenizer.all_special_ids)

    def build_loss_terms(self, student: PreTrainedModel, teacher: None) -> list[LossTerm]:
        args = self.args
        regression = student.config.num_labels == 1

        def halves(x):
            n = x.shape[0] // 2
            return x[:n], x[n:]

        def ce(s, t, batch, extras):
            (z1, z2), (y1, y2) = halves(s.logits), halves(batch["labels"])
            return hard_label_loss(z1, y1) + hard_label_loss(z2, y2)

        def views(s, t, batch, extras):
            z1, z2 = halves(s.logits)
            t1, t2 = (z1.detach(), z2.detach()) if args.ddgsd_detach_targets else (z1, z2)
            if regression:
                return logit_mse(z1, t2) + logit_mse(z2, t1)
            return soft_target_kl(z1, t2, args.temperature) + soft_target_kl(z2, t1, args.temperature)

        def mmd(s, t, batch, extras):
            f1, f2 = halves(s.hidden_states[-1][:, 0])
            return linear_mmd(f1, f2)

        return [
            LossTerm("ce", args.alpha_ce, ce, needs_labels=True, needs_teacher=False),
            LossTerm("views", args.alpha_kd, views, needs_teacher=False),
            LossTerm("mmd", args.ddgsd_mmd_weight, mmd, needs_hidden_states=True, needs_teacher=False),
        ]

    def two_views(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's two distorted views stacked along the batch (labels repeated)."""
        args, tokenizer = self.args, self.processing_class
        views = [
            distort(
                inputs["input_ids"],
                inputs["attention_mask"],
                inputs.get("token_type_ids"),
                self._special_ids,
                self.student.config.vocab_size,
                args.ddgsd_distortion,
                args.ddgsd_rate,
                tokenizer.mask_token_id,
                tokenizer.pad_token_id or 0,
            )  # fmt: skip
            for _ in range(2)
        ]
        stacked = {k: torch.cat([views[0][k], views[1][k]]) for k in views[0]}
        stacked["labels"] = torch.cat([inputs["labels"], inputs["labels"]])
        return stacked

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = self._distill_forward(model, self.two_views(inputs), None)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "none (two distorted views of each input)",
            "distortion": f"{args.ddgsd_distortion} at {args.ddgsd_rate:g}",
            "alpha_ce": args.alpha_ce,
            "views KL weight (alpha_kd)": args.alpha_kd,
            "ddgsd_mmd_weight": args.ddgsd_mmd_weight,
            "temperature": args.temperature,
            "detach_targets": args.ddgsd_detach_targets,
        }
