"""Trainers and their configs, one pair per method, and the registry `distill_glue.py --method` reads."""

from __future__ import annotations

from dataclasses import dataclass

from .baseline_trainer import StudentFineTuneTrainer
from .byot_config import BYOTConfig
from .byot_trainer import BYOTTrainer
from .cskd_config import CSKDConfig
from .cskd_trainer import CSKDTrainer
from .data_free_config import DataFreeConfig
from .data_free_trainer import DataFreeTrainer
from .ddgsd_config import DDGSDConfig
from .ddgsd_trainer import DDGSDTrainer
from .distilbert_config import DistilBertConfig
from .distilbert_trainer import DistilBertTrainer
from .distillation_config import DistillationTrainingConfig
from .distillation_trainer import DistillationTrainer
from .dml_config import DMLConfig
from .dml_trainer import DMLTrainer
from .dynabert_config import DynaBertConfig
from .dynabert_trainer import DynaBertTrainer
from .feature_config import FeatureDistillationConfig
from .feature_trainer import FeatureDistillationTrainer
from .finetune_trainer import FineTuneTrainer
from .gan_kd_config import GANKDConfig
from .gan_kd_trainer import GANKDTrainer
from .grafting_config import GraftingConfig
from .grafting_trainer import GraftingTrainer
from .multi_teacher_config import MultiTeacherConfig
from .multi_teacher_trainer import MultiTeacherTrainer
from .one_config import ONEConfig
from .one_trainer import ONETrainer
from .pkd_config import PatientKDConfig
from .pkd_trainer import PatientKDTrainer
from .tinybert_config import TinyBertConfig
from .tinybert_trainer import TinyBertTrainer


@dataclass(frozen=True)
class Method:
    """A distillation method: its `--method` name, config and trainer classes, and how `--student_num_layers`
    picks teacher layers by default (see `bertdistill.student.select_teacher_layers`)."""

    name: str
    config_class: type[DistillationTrainingConfig]
    trainer_class: type[DistillationTrainer]
    layer_selection: str = "uniform"
    full_student: bool = False  # without student arguments, the student is a copy of the whole teacher


METHODS: dict[str, Method] = {}


def register_method(
    name: str, trainer_class: type, layer_selection: str = "uniform", full_student: bool = False
) -> Method:
    """Make a method selectable by name; names are unique and the config must extend `DistillationTrainingConfig`."""
    if name in METHODS:
        raise ValueError(f"Method {name!r} is already registered")
    if not issubclass(trainer_class, DistillationTrainer):
        raise TypeError(f"{trainer_class.__name__} must extend DistillationTrainer")
    METHODS[name] = Method(name, trainer_class.config_class, trainer_class, layer_selection, full_student)
    return METHODS[name]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Valid methods: {', '.join(METHODS)}")
    return METHODS[name]


register_method("kd", DistillationTrainer)
register_method("pkd", PatientKDTrainer, layer_selection="first")
register_method("distilbert", DistilBertTrainer, layer_selection="alternate")
register_method("tinybert", TinyBertTrainer)
register_method("finetune", StudentFineTuneTrainer)
register_method("dynabert", DynaBertTrainer, full_student=True)
register_method("feature", FeatureDistillationTrainer)
register_method("cskd", CSKDTrainer)
register_method("byot", BYOTTrainer)
register_method("dml", DMLTrainer)
register_method("ddgsd", DDGSDTrainer)
register_method("one", ONETrainer)
register_method("grafting", GraftingTrainer)
register_method("multi_teacher", MultiTeacherTrainer)
register_method("gan_kd", GANKDTrainer)
register_method("data_free", DataFreeTrainer)

__all__ = [
    "METHODS",
    "BYOTConfig",
    "BYOTTrainer",
    "CSKDConfig",
    "CSKDTrainer",
    "DataFreeConfig",
    "DataFreeTrainer",
    "DDGSDConfig",
    "DDGSDTrainer",
    "DistilBertConfig",
    "DistilBertTrainer",
    "DistillationTrainer",
    "DistillationTrainingConfig",
    "DMLConfig",
    "DMLTrainer",
    "DynaBertConfig",
    "DynaBertTrainer",
    "FeatureDistillationConfig",
    "FeatureDistillationTrainer",
    "FineTuneTrainer",
    "GANKDConfig",
    "GANKDTrainer",
    "GraftingConfig",
    "GraftingTrainer",
    "MultiTeacherConfig",
    "MultiTeacherTrainer",
    "ONEConfig",
    "ONETrainer",
    "PatientKDConfig",
    "PatientKDTrainer",
    "StudentFineTuneTrainer",
    "TinyBertConfig",
    "TinyBertTrainer",
    "Method",
    "get_method",
    "register_method",
]
