"""`StudentFineTuneTrainer`: the no-distillation baseline, built and run exactly like a distilled student."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from ..modeling import LossTerm
from .distillation_trainer import DistillationTrainer


class StudentFineTuneTrainer(DistillationTrainer):
    """Fine-tunes the student on the gold labels only; the teacher is never run (it only supplied the student's
    initial weights and the label space). Compare any method against this with the same student, steps, seed and
    learning rate. The loss is the task loss with weight 1; `alpha_ce`, `alpha_kd` and `temperature` are ignored."""

    method_name = "fine-tuning"
    uses_teacher = None  # optional: it only supplies the student's layers and label space when given

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        return [self.task_loss_term(1.0)]

    def hyperparameters(self) -> dict[str, Any]:
        return {"teacher": "none (student fine-tuned on the labels only)"}
