"""`DistilBertTrainer`: DistilBERT's triple loss, for task distillation and for general (masked-LM) distillation."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ..layer_maps import describe, resolve_hidden_state_map
from ..losses import cosine_embedding_loss
from ..modeling import LossTerm
from .distilbert_config import DistilBertConfig
from .distillation_trainer import DistillationTrainer


class DistilBertTrainer(DistillationTrainer):
    """DistilBERT (Sanh et al. 2019): soft targets + task (or masked-LM) loss + cosine alignment of hidden states.
    Logs `loss_ce`, `loss_kd` and `loss_cos`. With `*ForMaskedLM` models and MLM batches (labels -100 except at the
    masked positions) it is general distillation: the soft targets are taken at the masked positions only.

    Args:
        model (`PreTrainedModel`): the student, same hidden size as the teacher.
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

        def cosine(s, t, batch, extras):
            mask = batch["attention_mask"]
            losses = [
                m.weight
                * cosine_embedding_loss(s.hidden_states[m.student_layer], t.hidden_states[m.teacher_layer], mask)
                for m in matches
            ]
            return torch.stack(losses).mean()

        return [
            *super().build_loss_terms(student, teacher),
            LossTerm("cos", args.alpha_cos, cosine, needs_hidden_states=True),
        ]

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "alpha_cos": self.args.alpha_cos,
            "layer_map": f"{self.args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
        }
