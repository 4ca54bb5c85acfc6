"""`MultiTeacherTrainer`: logit distillation from several fine-tuned teachers at once."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from ..losses import multi_teacher_kd, teacher_weights
from ..modeling import LossTerm
from ..teacher_ensemble import MultiTokenizerCollator, TeacherEnsemble, teacher_prefix
from .distillation_trainer import DistillationTrainer
from .multi_teacher_config import MultiTeacherConfig


class MultiTeacherTrainer(DistillationTrainer):
    """Multi-teacher KD: the teachers run as one [`TeacherEnsemble`] (frozen, its stacked logits cached once like a
    single teacher's when the run qualifies), the student learns the labels and the teachers' mixed soft targets
    (`args.teacher_weighting`). Logs `loss_ce` and `loss_kd`.

    Args:
        model (`PreTrainedModel`): the student.
        teacher_model (`list[PreTrainedModel]` or `TeacherEnsemble`): two or more teachers fine-tuned on the task,
            with the student's label space; the first reads the student's tokens.
        teacher_tokenizers (`list`, *optional*): one per teacher: `None` for a teacher that reads the student's tokens
            (same vocabulary, checked), else its own tokenizer: the training set must then carry its encoding
            (`glue_run.tokenize_split(..., teacher_tokenizers={teacher_prefix(k): tokenizer})`), padded by a
            [`MultiTokenizerCollator`] the trainer sets up; only that teacher reads it.
        args (`MultiTeacherConfig`): training and loss configuration.
    """

    method_name = "multi_teacher"
    config_class = MultiTeacherConfig

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model=None,
        args: MultiTeacherConfig | None = None,
        teacher_tokenizers: list | None = None,
        **kwargs,
    ):
        teacher_tokenizers = list(teacher_tokenizers or [])
        if isinstance(teacher_model, (list, tuple)):
            if teacher_tokenizers and len(teacher_tokenizers) != len(teacher_model):
                raise ValueError(
                    f"teacher_tokenizers: one per teacher (None: the student's), got {len(teacher_tokenizers)} for "
                    f"{len(teacher_model)} teachers"
                )
            own = [t is not None for t in teacher_tokenizers] if teacher_tokenizers else None
            teacher_model = TeacherEnsemble(list(teacher_model), own)
        own_tokenizers = {teacher_prefix(k): t for k, t in enumerate(teacher_tokenizers) if t is not None}
        if own_tokenizers and kwargs.get("data_collator") is None:
            tokenizer = kwargs.get("processing_class")
            if tokenizer is None:
                raise ValueError("Teachers with their own tokenizers need the student's: pass processing_class")
            kwargs["data_collator"] = MultiTokenizerCollator(tokenizer, own_tokenizers)
        if teacher_model is not None and not isinstance(teacher_model, TeacherEnsemble):
            raise ValueError("Multi-teacher KD takes a list of at least 2 teachers (or a TeacherEnsemble)")
        if isinstance(args, MultiTeacherConfig) and args.fixed_weights() is not None and teacher_model is not None:
            if len(args.fixed_weights()) != len(teacher_model.teachers):
                raise ValueError(
                    f"teacher_weights has {len(args.fixed_weights())} weights for {len(teacher_model.teachers)} "
                    "teachers"
                )
        self._ensemble = teacher_model
        super().__init__(model, teacher_model, args, **kwargs)

    def teacher_input_columns(self) -> list[str]:
        return self._ensemble.input_columns()

    def build_loss_terms(self, student: PreTrainedModel, teacher: TeacherEnsemble) -> list[LossTerm]:
        args = self.args

        def kd(s, t, batch, extras):
            weights = teacher_weights(t.logits, batch["labels"], args.teacher_weighting, args.fixed_weights())
            return multi_teacher_kd(s.logits, t.logits, weights, args.temperature)

        needs_labels = args.teacher_weighting == "confidence"
        return [self.task_loss_term(args.alpha_ce), LossTerm("kd", args.alpha_kd, kd, needs_labels=needs_labels)]

    def hyperparameters(self) -> dict[str, Any]:
        args = self.args
        rows = {**super().hyperparameters(), "teachers": self.accelerator.unwrap_model(self.teacher).name_or_path,
                "teacher_weighting": args.teacher_weighting}  # fmt: skip
        if args.teacher_weights:
            rows["teacher_weights"] = args.teacher_weights
        return rows
