"""`PatientKDTrainer`: logit distillation plus the patient loss on intermediate [CLS] vectors."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from ..layer_maps import describe, resolve_hidden_state_map
from ..losses import pkd_hidden_distance
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .pkd_config import PatientKDConfig


class PatientKDTrainer(DistillationTrainer):
    """Patient-KD (Sun et al. 2019): the student's intermediate [CLS] vectors follow the teacher's (PKD-Skip or
    PKD-Last), on top of the soft-target and task losses. Logs `loss_ce`, `loss_kd` and `loss_pt`.

    Args:
        model (`PreTrainedModel`): the student, same hidden size as the teacher.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher.
        args (`PatientKDConfig`): training and loss configuration.
    """

    method_name = "pkd"
    config_class = PatientKDConfig

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        self.layer_map = matches = resolve_hidden_state_map(
            args.layer_map, teacher.config, student.config, "Patient-KD"
        )

        def patient(s, t, batch, extras):
            per_layer = torch.stack(
                [
                    m.weight
                    * pkd_hidden_distance(
                        s.hidden_states[m.student_layer][:, 0], t.hidden_states[m.teacher_layer][:, 0]
                    )
                    for m in matches
                ]
            )
            combined = per_layer.sum(0) if args.pt_reduction == "sum" else per_layer.mean(0)
            return combined.mean()

        return [
            *super().build_loss_terms(student, teacher),
            LossTerm("pt", args.beta, patient, needs_hidden_states=True),
        ]

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "beta": self.args.beta,
            "layer_map": f"{self.args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
            "pt_reduction": self.args.pt_reduction,
        }
