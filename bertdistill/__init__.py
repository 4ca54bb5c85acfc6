"""bertdistill: knowledge distillation for BERT-style transformers on current transformers, with GLUE results."""

from .layer_maps import PRESETS, LayerMatch, register_preset, resolve_layer_map
from .losses import (
    LOSSES,
    cosine_embedding_loss,
    get_loss,
    hard_label_loss,
    logit_mse,
    pkd_hidden_distance,
    register_loss,
    soft_target_kl,
)
from .modeling import DistillationModel, DistillationOutput, LossTerm
from .student import (
    build_student,
    default_student_layers,
    select_teacher_layers,
    student_from_config,
    student_from_teacher_layers,
)
from .trainers import (
    METHODS,
    DistilBertConfig,
    DistilBertTrainer,
    DistillationTrainer,
    DistillationTrainingConfig,
    FineTuneTrainer,
    PatientKDConfig,
    PatientKDTrainer,
    StudentFineTuneTrainer,
    TinyBertConfig,
    TinyBertTrainer,
    get_method,
    register_method,
)

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "METHODS",
    "PRESETS",
    "DistilBertConfig",
    "DistilBertTrainer",
    "DistillationModel",
    "DistillationOutput",
    "DistillationTrainer",
    "DistillationTrainingConfig",
    "FineTuneTrainer",
    "LayerMatch",
    "LossTerm",
    "PatientKDConfig",
    "PatientKDTrainer",
    "StudentFineTuneTrainer",
    "TinyBertConfig",
    "TinyBertTrainer",
    "build_student",
    "cosine_embedding_loss",
    "default_student_layers",
    "get_loss",
    "get_method",
    "hard_label_loss",
    "logit_mse",
    "pkd_hidden_distance",
    "register_loss",
    "register_method",
    "register_preset",
    "resolve_layer_map",
    "select_teacher_layers",
    "soft_target_kl",
    "student_from_config",
    "student_from_teacher_layers",
]
