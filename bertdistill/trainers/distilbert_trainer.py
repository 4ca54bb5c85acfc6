"""`DistilBertTrainer`: DistilBERT's triple loss, for task distillation and for general (masked-LM) distillation."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ..layer_maps import describe, resolve_hidden_state_map
from ..layer_matching import check_matches, layer_match_term
from ..modeling import LossTerm
from .distilbert_config import DistilBertConfig
from .distillation_trainer import DistillationTrainer

DEFAULT_LOSSES = {"hidden": "cosine"}


class DistilBertTrainer(DistillationTrainer):
    """DistilBERT (Sanh et al. 2019): soft targets + task (or masked-LM) loss + cosine alignment of hidden states.
    Logs `loss_ce`, `loss_kd` and `loss_cos`. With `*ForMaskedLM` models and MLM batches (labels -100 except at the
    masked positions) it is general distillation: the soft targets cover every real token (the authors' code) or,
    with `restrict_kd_to_mask`, the masked positions only.

    Args:
        model (`PreTrainedModel`): the student; a narrower one needs a projection, which every match gets (see
            `bertdistill.layer_matching`).
        teacher_model (`PreTrainedModel`): the teacher (fine-tuned on the task, or pre-trained with an MLM head).
        args (`DistilBertConfig`): training and loss configuration.
    """

    method_name = "distilbert"
    config_class = DistilBertConfig

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        self.layer_map = matches = resolve_hidden_state_map(
            args.layer_map, teacher.config, student.config, "DistilBERT's cosine loss"
        )
        self.default_losses = DEFAULT_LOSSES
        check_matches(matches, DEFAULT_LOSSES, student.config, teacher.config, "DistilBERT",
                      args.per_device_train_batch_size)  # fmt: skip
        return [
            *super().build_loss_terms(student, teacher),
            layer_match_term("cos", args.alpha_cos, matches, DEFAULT_LOSSES, reduction="mean"),
        ]

    def kd_token_mask(self, batch: dict[str, torch.Tensor | None]) -> torch.Tensor:
        if self.args.restrict_kd_to_mask:
            return super().kd_token_mask(batch)
        return batch["attention_mask"].bool()

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "alpha_cos": self.args.alpha_cos,
            "layer_map": f"{self.args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
            "restrict_kd_to_mask (general mode)": self.args.restrict_kd_to_mask,
        }
