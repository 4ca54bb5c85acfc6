"""Configuration of the base logit distillation (Hinton et al. 2015) on top of `TrainingArguments`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from transformers import TrainingArguments

# What a prediction-layer loss on a regression task is measured against (TinyBERT's `regression_target`).
REGRESSION_TARGETS = ("teacher", "gold")


@dataclass
class DistillationTrainingConfig(TrainingArguments):
    r"""
    Configuration for [`DistillationTrainer`]: everything `TrainingArguments` has, plus the distillation loss.

    The loss is `alpha_ce * task_loss + alpha_kd * kd_loss (+ terms added by subclasses)`, where the task loss is
    cross-entropy on the gold labels (MSE for regression) and `kd_loss = T^2 * KL(softmax(z_T/T) || softmax(z_S/T))`
    (MSE between student and teacher outputs for regression).

    Args:
        alpha_ce (`float`, *optional*, defaults to `0.5`):
            Weight of the loss on the gold labels.
        alpha_kd (`float`, *optional*, defaults to `0.5`):
            Weight of the soft-target loss on the teacher's logits.
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature of the soft-target loss; must be positive.
        cache_teacher_logits (`bool`, *optional*, defaults to `False`):
            Compute the teacher's logits of the training set once (a `teacher_logits` column, cached on disk with the
            dataset and recomputed when the data or the teacher change) instead of running the teacher every step.
            Only for losses that read nothing but the teacher's logits (`kd`, TinyBERT's prediction stage) on a
            sequence-classification student.
    """

    alpha_ce: float = field(
        default=0.5, metadata={"help": "Weight of the loss on the gold labels (CE, MSE for stsb)."}
    )
    alpha_kd: float = field(
        default=0.5, metadata={"help": "Weight of the soft-target loss T^2 * KL(teacher/T || student/T)."}
    )
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the soft-target loss (> 0)."})
    cache_teacher_logits: bool = field(
        default=False,
        metadata={"help": "Compute the teacher's logits of the training set once and reuse them (logit-only losses)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("alpha_ce", "alpha_kd"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def split_stages(self) -> list[DistillationTrainingConfig]:
        """Configs to run one after the other on the same student; one stage unless a method says otherwise."""
        return [self]

    def two_stages(self, first: str, second: str, epochs: float | None, learning_rate: float | None) -> list:
        """`[first stage, second stage]` for a method with `stage="both"`: the first writes to
        `<output_dir>-<first>` with its own epochs and learning rate (default: this config's) and is neither pushed
        nor reloaded at its best; the second is this config in `output_dir`."""
        head = dataclasses.replace(
            self,
            stage=first,
            output_dir=self.output_dir.rstrip("/\\") + f"-{first}",
            num_train_epochs=epochs or self.num_train_epochs,
            learning_rate=learning_rate or self.learning_rate,
            push_to_hub=False,
            load_best_model_at_end=False,
        )
        return [head, dataclasses.replace(self, stage=second)]
