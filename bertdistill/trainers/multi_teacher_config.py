"""Configuration of multi-teacher knowledge distillation."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..losses.multi_teacher import TEACHER_WEIGHTINGS
from .distillation_config import DistillationTrainingConfig


@dataclass
class MultiTeacherConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`MultiTeacherTrainer`]: `alpha_ce` CE + `alpha_kd` T^2 KL to the teachers' mixed soft targets
    (`bertdistill.losses.multi_teacher`); MSE to their weighted outputs for regression.

    Args:
        teacher_weighting (`str`, *optional*, defaults to `"mean"`): `"mean"` (every teacher alike), `"fixed"`
            (`teacher_weights`) or `"confidence"` (per example, CA-MKD: teachers whose prediction is closer to the
            gold label weigh more).
        teacher_weights (`str`, *optional*): `"0.7,0.3"`, one weight per teacher, for `"fixed"` (normalised).
    """

    teacher_weighting: str = field(default="mean", metadata={"help": "mean, fixed or confidence (CA-MKD)."})
    teacher_weights: str | None = field(default=None, metadata={"help": "Fixed weights, one per teacher: '0.7,0.3'."})

    def __post_init__(self):
        super().__post_init__()
        if self.teacher_weighting not in TEACHER_WEIGHTINGS:
            raise ValueError(
                f"teacher_weighting must be one of {', '.join(TEACHER_WEIGHTINGS)}, got {self.teacher_weighting!r}"
            )
        if (self.teacher_weighting == "fixed") != (self.teacher_weights is not None):
            raise ValueError("teacher_weights goes with teacher_weighting='fixed' (and only with it)")
        weights = self.fixed_weights()
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) == 0):
            raise ValueError(f"teacher_weights must be >= 0 and not all 0, got {self.teacher_weights!r}")

    def fixed_weights(self) -> list[float] | None:
        if self.teacher_weights is None:
            return None
        try:
            return [float(w) for w in self.teacher_weights.split(",")]
        except ValueError as error:
            raise ValueError(f"teacher_weights takes comma-separated numbers, got {self.teacher_weights!r}") from error
