"""`CSKDTrainer`: class-wise self-knowledge distillation (CS-KD), no teacher."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ..losses import soft_target_kl
from ..modeling import LossTerm
from ..samplers import ClassPairSampler, class_labels
from ..speed_levers import choose
from .cskd_config import CSKDConfig
from .distillation_trainer import DistillationTrainer


class CSKDTrainer(DistillationTrainer):
    """CS-KD (Yun et al. 2020): every batch is `B` anchors followed by `B` partners of the same classes
    ([`ClassPairSampler`]); the anchors learn their labels and, at temperature `T`, the network's own predictions for
    their partners, computed without gradient. Logs `loss_ce` and `loss_cls`. No teacher is given or run.

    Args:
        model (`PreTrainedModel`): the network, a sequence classifier (e.g. 3 layers of a pre-trained encoder).
        teacher_model: must be `None`.
        args (`CSKDConfig`): training and loss configuration.
    """

    method_name = "cskd"
    config_class = CSKDConfig
    uses_teacher = False

    def __init__(self, model: PreTrainedModel, teacher_model: None = None, args: CSKDConfig | None = None, **kwargs):
        if model.config.num_labels < 2:
            raise ValueError(
                "CS-KD pairs examples of the same class, so it needs a classification task; this model predicts one "
                "value (regression, e.g. STS-B)"
            )
        if isinstance(args, CSKDConfig) and args.requested_lever("train_sampling_strategy") is not None:
            raise ValueError(
                "CS-KD's same-class pairs replace the training sampler; leave train_sampling_strategy unset (got "
                f"{args.requested_lever('train_sampling_strategy')!r})"
            )
        super().__init__(model, teacher_model, args, **kwargs)
        self._labels = class_labels(self.train_dataset, model.config.num_labels, "CS-KD")
        self.speed_levers["train_sampling_strategy"] = choose(
            None, "class_pairs", "CS-KD's same-class pairs replace the sampler"
        )

    def build_loss_terms(self, student: PreTrainedModel, teacher: None) -> list[LossTerm]:
        args = self.args

        def cls(s, partner, batch, extras):
            return soft_target_kl(s.logits, partner.logits, args.temperature)

        # The partners' predictions come in where a teacher's would (see compute_loss), so no teacher is run.
        return [self.task_loss_term(args.alpha_ce), LossTerm("cls", args.alpha_kd, cls, needs_teacher=False)]

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        # Anchors and partners travel in one batch of 2B rows; compute_loss splits it.
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=2 * self._train_batch_size,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def _get_train_sampler(self, train_dataset=None):
        # the loader's batch is 2 x this (anchors, then partners): both from the Trainer's own batch size
        return ClassPairSampler(self._labels, self._train_batch_size, self.args.seed, self.args.cskd_partner)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        half = inputs["input_ids"].shape[0] // 2
        anchors = {k: v[:half] for k, v in inputs.items() if v is not None}
        partners = {k: v[half:] for k, v in inputs.items() if v is not None and k != "labels"}
        with torch.no_grad():
            # The plain network (dropout on, as in training), outside DDP: no gradient, nothing to all-reduce.
            partner_logits = self.accelerator.unwrap_model(model)(**partners).logits.detach()
        outputs = self._distill_forward(model, {**anchors, "teacher_logits": partner_logits}, None)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return {
            "teacher": "none (class-wise self-distillation)",
            "alpha_ce": args.alpha_ce,
            "lambda_cls (alpha_kd)": args.alpha_kd,
            "temperature": args.temperature,
            "partner": args.cskd_partner,
        }
