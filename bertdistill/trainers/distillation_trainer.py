"""`DistillationTrainer`: a `transformers.Trainer` that distills a fine-tuned teacher into a student."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from ..attention import record_attention_scores, stop_recording_attention_scores
from ..layer_maps import LayerMatch
from ..layer_matching import build_projections
from ..losses import hard_label_loss, logit_mse, soft_cross_entropy, soft_target_kl
from ..model_card import ModelCardMixin
from ..modeling import DistillationModel, LossTerm
from ..student import check_same_vocabulary
from ..teacher_cache import TEACHER_LOGITS_COLUMN, add_teacher_logits
from .distillation_config import REGRESSION_TARGETS, DistillationTrainingConfig


class DistillationTrainer(ModelCardMixin, Trainer):
    """Trains `model` (the student) to match `teacher_model`, with the loss of `args`.

    The student is wrapped in a [`DistillationModel`] together with any trainable extras, so `trainer.model` is that
    wrapper and `trainer.student` the student. The teacher is trainer state: frozen, in eval mode, prepared by
    accelerate for evaluation only, never in the optimizer, never saved. Evaluation and prediction run the student
    alone. Checkpoints and `save_model` write a plain student checkpoint that `from_pretrained` loads.

    Args:
        model (`PreTrainedModel`): the student: `*ForSequenceClassification` for task distillation, `*ForMaskedLM`
            or a bare encoder for general distillation.
        teacher_model (`PreTrainedModel`): the fine-tuned teacher, same vocabulary and label space as the student.
        args (`DistillationTrainingConfig`): training and loss configuration.
        **kwargs: everything else `Trainer` takes (`train_dataset`, `eval_dataset`, `processing_class`, ...).
    """

    method_name = "kd"
    config_class = DistillationTrainingConfig
    # Every loss here is a per-batch mean: let the Trainer divide by the accumulation steps (see transformers'
    # `loss_is_scaled_for_ga`; our wrapper's forward has no **kwargs, but saying it keeps this independent of that).
    loss_is_scaled_for_ga = False
    # The layer matches of the method's intermediate losses (set by `build_loss_terms`); their projections are built
    # by `build_extras`.
    layer_map: list[LayerMatch] = []

    def __init__(
        self, model: PreTrainedModel, teacher_model: PreTrainedModel, args: DistillationTrainingConfig, **kwargs
    ):
        if not isinstance(args, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(args).__name__}")
        check_same_vocabulary(teacher_model.config, model.config)
        if teacher_model.config.num_labels != model.config.num_labels:
            raise ValueError(
                f"Teacher predicts {teacher_model.config.num_labels} labels but the student {model.config.num_labels}"
            )
        self.args = args
        wrapped = DistillationModel(
            model, self.build_loss_terms(model, teacher_model), self.build_extras(model, teacher_model)
        )
        # Exactly the layers the active attention terms read record scores (the slower fp32 path); with none, both
        # models go back to plain SDPA, e.g. for a prediction stage after an intermediate one on the same models.
        for side, layers in ((teacher_model, wrapped.teacher_attention_layers),
                             (model, wrapped.student_attention_layers)):  # fmt: skip
            if layers:
                record_attention_scores(side, list(layers))
            else:
                stop_recording_attention_scores(side)
        super().__init__(model=wrapped, args=args, **kwargs)

        for parameter in teacher_model.parameters():
            parameter.requires_grad_(False)
        teacher_model.eval()
        self.teacher = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        if args.cache_teacher_logits:
            self.train_dataset = self._with_teacher_logits(self.train_dataset)
        self._loss_sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.args.device))
        self._loss_count = 0

    # ---- what subclasses extend ---------------------------------------------------------------------------------

    def build_loss_terms(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[LossTerm]:
        """The weighted terms of the loss; subclasses append theirs to `super().build_loss_terms(...)`.

        `ce` is the loss on the gold labels, `kd` the soft-target loss on the logits. For token-level logits (masked
        language modelling) `ce` is taken over the positions whose label is not -100, `kd` over those of
        [`kd_token_mask`].
        """
        args = self.args

        def kd(s, t, batch, extras):
            mask = self.kd_token_mask(batch) if s.logits.dim() == 3 else None
            if s.logits.shape[-1] == 1:
                return logit_mse(s.logits, t.logits)
            return soft_target_kl(s.logits, t.logits, args.temperature, mask=mask)

        return [
            self.task_loss_term(args.alpha_ce),
            LossTerm("kd", args.alpha_kd, kd, needs_labels=student.config.num_labels != 1),
        ]

    def kd_token_mask(self, batch: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """Which positions of token-level logits (masked language modelling) the soft-target loss covers: the masked
        ones (labels not -100)."""
        return batch["labels"] != -100

    @staticmethod
    def task_loss_term(weight: float) -> LossTerm:
        """`ce`: the loss on the gold labels (cross-entropy, MSE for regression, masked-LM loss for token logits)."""

        def ce(s, t, batch, extras):
            return hard_label_loss(s.logits, batch["labels"])

        return LossTerm("ce", weight, ce, needs_labels=True, needs_teacher=False)

    @staticmethod
    def prediction_loss_term(
        weight: float, temperature: float, regression: bool = False, regression_target: str = "teacher"
    ) -> LossTerm:
        """`pred`: TinyBERT's and DynaBERT's prediction-layer loss, the soft cross-entropy between student and teacher
        logits at `temperature`. For regression (`regression=True`): MSE against the teacher's outputs
        (`regression_target="teacher"`) or against the gold labels (`"gold"`, what TinyBERT's code does; the teacher
        is then not run)."""
        if regression_target not in REGRESSION_TARGETS:
            raise ValueError(f"regression_target must be one of {REGRESSION_TARGETS}, got {regression_target!r}")
        if regression and regression_target == "gold":

            def pred_gold(s, t, batch, extras):
                return hard_label_loss(s.logits, batch["labels"])

            return LossTerm("pred", weight, pred_gold, needs_labels=True, needs_teacher=False)

        def pred(s, t, batch, extras):
            if regression:
                return logit_mse(s.logits, t.logits)
            return soft_cross_entropy(s.logits, t.logits, temperature)

        return LossTerm("pred", weight, pred)

    def build_extras(self, student: PreTrainedModel, teacher: PreTrainedModel) -> nn.ModuleDict:
        """Trainable modules besides the student: the projections of `self.layer_map` (a hidden match with
        `proj=True`, or between different widths; see `bertdistill.layer_matching`). None for logit distillation."""
        return build_projections(
            self.layer_map, student.config.hidden_size, teacher.config.hidden_size, self.shared_projection()
        )

    def shared_projection(self) -> bool:
        """Whether projected matches share one projection (TinyBERT's option); one per match by default."""
        return False

    # ---- training -----------------------------------------------------------------------------------------------

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    def _with_teacher_logits(self, dataset):
        """The training set with the teacher's logits as a column (`cache_teacher_logits`), after checking that the
        loss needs nothing else of the teacher and that an example's teacher input is the same every epoch."""
        wrapper = self.accelerator.unwrap_model(self.model)
        name = type(self).__name__
        if wrapper.needs_hidden_states or wrapper.needs_attentions:
            raise ValueError(
                f"cache_teacher_logits: {name} with these weights reads the teacher's hidden states or attentions, "
                "not only its logits; cache only logit-only losses (method kd, TinyBERT's prediction stage)"
            )
        if not type(wrapper.student).__name__.endswith("ForSequenceClassification"):
            raise ValueError(
                f"cache_teacher_logits needs a sequence-classification student, got {type(wrapper.student).__name__}"
                " (masked-LM inputs change every epoch)"
            )
        if dataset is None:
            raise ValueError("cache_teacher_logits needs a train_dataset")
        teacher = self.accelerator.unwrap_model(self.teacher)
        with self.args.main_process_first(desc="teacher logits"):
            return add_teacher_logits(
                dataset, teacher, self.data_collator, self.args.per_device_eval_batch_size, self.args.device
            )

    def _teacher_outputs(self, wrapper: DistillationModel, inputs: dict[str, torch.Tensor]):
        if not wrapper.needs_teacher or TEACHER_LOGITS_COLUMN in inputs:
            return None
        with torch.no_grad():
            return self.teacher(
                **{k: v for k, v in inputs.items() if k != "labels"},
                output_hidden_states=wrapper.needs_hidden_states,
                output_attentions=wrapper.needs_attentions,
            )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        teacher_outputs = self._teacher_outputs(self.accelerator.unwrap_model(model), inputs)
        outputs = self._distill_forward(model, inputs, teacher_outputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _distill_forward(self, model, inputs, teacher_outputs):
        """The wrapper's training forward; its loss components are kept for the next log."""
        outputs = model(**inputs, teacher_outputs=teacher_outputs, distill=True)
        for name, value in outputs.loss_components.items():
            self._loss_sums[name] += value.detach()
        self._loss_count += 1
        return outputs

    @classmethod
    def teacher_for_next_stage(cls, teacher: PreTrainedModel, student: PreTrainedModel) -> PreTrainedModel:
        """The teacher of a method's next stage, given this stage's teacher and trained student: the same teacher
        unless a method says otherwise (DynaBERT's second stage learns from the first stage's model)."""
        return teacher

    @torch.no_grad()
    def distillation_loss(self, dataset, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The distillation loss and its components on `dataset`, with dropout off: what general distillation
        reports, since a bare encoder has no task metric. Averaged over batches and processes."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.args.device))
        batches = 0
        for inputs in self.get_eval_dataloader(dataset):
            inputs = self._prepare_inputs(inputs)
            outputs = model(**inputs, teacher_outputs=self._teacher_outputs(model, inputs), distill=True)
            sums["distill_loss"] += outputs.loss.detach()
            for name, value in outputs.loss_components.items():
                sums[f"loss_{name}"] += value.detach()
            batches += 1
        model.train(was_training)
        return {
            f"{metric_key_prefix}_{name}": self.accelerator.reduce(total / max(batches, 1), reduction="mean").item()
            for name, total in sums.items()
        }

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Training logs carry "loss": add each component's mean since the last log, averaged over processes.
        if "loss" in logs and self._loss_count:
            for name, total in self._loss_sums.items():
                mean = self.accelerator.reduce(total / self._loss_count, reduction="mean")
                logs[f"loss_{name}"] = mean.item()
            self._loss_sums.clear()
            self._loss_count = 0
        super().log(logs, start_time)

    # ---- saving and loading: a plain student checkpoint -----------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        model.load_checkpoint(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self.accelerator.unwrap_model(self.model).load_checkpoint(self.state.best_model_checkpoint)

    # ---- model card ---------------------------------------------------------------------------------------------

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha_ce": self.args.alpha_ce, "alpha_kd": self.args.alpha_kd, "temperature": self.args.temperature}

    def card_model(self) -> PreTrainedModel:
        return self.student

    def card_base(self) -> tuple[str | None, PreTrainedModel | None]:
        teacher = self.accelerator.unwrap_model(self.teacher)
        return teacher.name_or_path, teacher
