"""`PatientKDTrainer`: logit distillation plus the patient loss on intermediate [CLS] vectors."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from ..layer_maps import describe, resolve_hidden_state_map
from ..layer_matching import check_matches, layer_match_term
from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer
from .pkd_config import PT_REDUCTIONS, PatientKDConfig

DEFAULT_LOSSES = {"hidden": "pkd"}


class PatientKDTrainer(DistillationTrainer):
    """Patient-KD (Sun et al. 2019): the student's intermediate [CLS] vectors follow the teacher's (PKD-Skip or
    PKD-Last), on top of the soft-target and task losses. Logs `loss_ce`, `loss_kd` and `loss_pt`.

    Args:
        model (`PreTrainedModel`): the student; a narrower one needs a projection, which every match gets (see
            `bertdistill.layer_matching`).
        teacher_model (`PreTrainedModel`): the fine-tuned teacher.
        args (`PatientKDConfig`): training and loss configuration.
    """

    method_name = "pkd"
    config_class = PatientKDConfig

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        args = self.args
        self.layer_map = matches = resolve_hidden_state_map(args.layer_map, teacher.config, student.config,
                                                            "Patient-KD")  # fmt: skip
        self.default_losses = DEFAULT_LOSSES
        check_matches(matches, DEFAULT_LOSSES, student.config, teacher.config, "Patient-KD",
                      args.per_device_train_batch_size)  # fmt: skip
        reduction, per_element = PT_REDUCTIONS[args.pt_reduction]
        # The registered "pkd" loss is the authors' per-element mean; the paper's squared L2 norm sums the hidden size.
        scale = 1.0 if per_element else float(teacher.config.hidden_size)
        return [
            *super().build_loss_terms(student, teacher),
            layer_match_term("pt", args.beta, matches, DEFAULT_LOSSES, reduction=reduction, scale=scale),
        ]

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "beta": self.args.beta,
            "layer_map": f"{self.args.layer_map} ({describe(self.layer_map)}, student<-teacher)",
            "pt_reduction": self.args.pt_reduction,
        }
