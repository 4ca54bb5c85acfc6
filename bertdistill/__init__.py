"""bertdistill: knowledge distillation for BERT-style transformers on current transformers, with GLUE results."""

from .losses import LOSSES, get_loss, hard_label_loss, logit_mse, register_loss, soft_target_kl
from .modeling import DistillationModel, DistillationOutput, LossTerm
from .student import build_student, default_student_layers, student_from_config, student_from_teacher_layers
from .trainers import (
    METHODS,
    DistillationTrainer,
    DistillationTrainingConfig,
    FineTuneTrainer,
    get_method,
    register_method,
)

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "METHODS",
    "DistillationModel",
    "DistillationOutput",
    "DistillationTrainer",
    "DistillationTrainingConfig",
    "FineTuneTrainer",
    "LossTerm",
    "build_student",
    "default_student_layers",
    "get_loss",
    "get_method",
    "hard_label_loss",
    "logit_mse",
    "register_loss",
    "register_method",
    "soft_target_kl",
    "student_from_config",
    "student_from_teacher_layers",
]
