"""Trainers and their configs, one pair per method, and the registry `distill_glue.py --method` reads."""

from __future__ import annotations

from dataclasses import dataclass

from .distillation_config import DistillationTrainingConfig
from .distillation_trainer import DistillationTrainer
from .finetune_trainer import FineTuneTrainer


@dataclass(frozen=True)
class Method:
    """A distillation method: its `--method` name, config class and trainer class."""

    name: str
    config_class: type[DistillationTrainingConfig]
    trainer_class: type[DistillationTrainer]


METHODS: dict[str, Method] = {}


def register_method(name: str, config_class: type, trainer_class: type) -> Method:
    """Make a method selectable by name; names are unique and the config must extend `DistillationTrainingConfig`."""
    if name in METHODS:
        raise ValueError(f"Method {name!r} is already registered")
    if not issubclass(config_class, DistillationTrainingConfig) or not issubclass(trainer_class, DistillationTrainer):
        raise TypeError("config_class must extend DistillationTrainingConfig and trainer_class DistillationTrainer")
    METHODS[name] = Method(name, config_class, trainer_class)
    return METHODS[name]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Valid methods: {', '.join(METHODS)}")
    return METHODS[name]


register_method("kd", DistillationTrainingConfig, DistillationTrainer)

__all__ = [
    "METHODS",
    "DistillationTrainer",
    "DistillationTrainingConfig",
    "FineTuneTrainer",
    "Method",
    "get_method",
    "register_method",
]
