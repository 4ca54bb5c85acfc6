"""`DistillationTrainer`: a `transformers.Trainer` that distills a fine-tuned teacher into a student."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from typing import Any

import datasets
import torch
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import PreTrainedModel, Trainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import has_length

from ..activations import recording_ffn_inputs
from ..attention import record_attention_scores, stop_recording_attention_scores
from ..compression.sparsity import (
    SparsityCallback,
    add_sparsity_masks,
    movement_scores,
    remove_sparsity_masks,
    summarize_sparsity,
)
from ..glue_run import glue_dev_metrics
from ..layer_maps import LayerMatch
from ..layer_matching import build_match_modules
from ..losses import hard_label_loss, logit_mse, soft_cross_entropy, soft_target_kl
from ..model_card import ModelCardMixin
from ..modeling import DistillationModel, LossTerm
from ..speed_levers import LeverChoice, choose, log_choices
from ..student import check_same_vocabulary
from ..task_head import start_regression_heads
from ..teacher_cache import TEACHER_LOGITS_COLUMN, add_teacher_logits
from ..teacher_output_cache import TEACHER_ROW_COLUMN, CacheSpec, TeacherOutputCache, plan_cache, write_cache
from .distillation_config import REGRESSION_TARGETS, DistillationTrainingConfig

logger = logging.getLogger(__name__)


class DistillationTrainer(ModelCardMixin, Trainer):
    """Trains `model` (the student) to match `teacher_model`, with the loss of `args`.

    The student is wrapped in a [`DistillationModel`] together with any trainable extras, so `trainer.model` is that
    wrapper and `trainer.student` the student. The teacher is trainer state: frozen, in eval mode, prepared by
    accelerate for evaluation only, never in the optimizer, never saved. Evaluation and prediction run the student
    alone. Checkpoints and `save_model` write a plain student checkpoint that `from_pretrained` loads.

    Speed levers (see `bertdistill.speed_levers`): the config resolves the sampler and bf16, the trainer the teacher
    caches (`cache_teacher_outputs` first, then `cache_teacher_logits`), each to the user's value or to what
    bertdistill chose and why. `trainer.speed_levers` holds the choices; they are logged here, returned in
    `train()`'s metrics as `speed_levers` (hence in `train_results.json`) and listed in the model card.

    Unstructured sparsity (`args.sparsity > 0`, see `bertdistill.compression.sparsity`): `train()` first masks the
    student's encoder linear layers (movement scores become parameters of the student, hence of the DDP-wrapped
    model, in an optimizer group of their own), a [`SparsityCallback`] follows the schedule, checkpoints carry the
    masks so that a resumed run continues with them, and at the end the masks are multiplied into the weights: the
    trained student is a plain model again. The achieved sparsity goes into the metrics and the model card.

    Args:
        model (`PreTrainedModel`): the student: `*ForSequenceClassification` for task distillation, `*ForMaskedLM`
            or a bare encoder for general distillation.
        teacher_model (`PreTrainedModel`, *optional*): the fine-tuned teacher, same vocabulary and label space as the
            student; required unless the trainer's `uses_teacher` says otherwise (`False`: refused, `None`:
            optional).
        args (`DistillationTrainingConfig`): training and loss configuration.
        **kwargs: everything else `Trainer` takes (`train_dataset`, `eval_dataset`, `processing_class`, ...).
    """

    method_name = "kd"
    config_class = DistillationTrainingConfig
    # False for self-distillation schemes (CS-KD, BYOT): no teacher is given, loaded or run; None: optional (DML).
    uses_teacher: bool | None = True
    # The module the Trainer wraps (data-free distillation generates the student's inputs in its own forward).
    wrapper_class: type[DistillationModel] = DistillationModel
    # False: the trainer reads no training rows (data-free distillation); distill_glue.py then passes none.
    reads_train_set = True
    # Every loss here is a per-batch mean: let the Trainer divide by the accumulation steps (see transformers'
    # `loss_is_scaled_for_ga`; our wrapper's forward has no **kwargs, but saying it keeps this independent of that).
    loss_is_scaled_for_ga = False
    # The layer matches of the method's intermediate losses and the loss per feature of those whose `loss` is None
    # (set by `build_loss_terms`); their projections and loss parts are built by `build_extras`.
    layer_map: list[LayerMatch] = []
    default_losses: dict[str, str] = {}

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | None = None,
        args: DistillationTrainingConfig | None = None,
        **kwargs,
    ):
        if not isinstance(args, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(args).__name__}")
        if self.uses_teacher is True and teacher_model is None:
            raise ValueError(f"{type(self).__name__} distills from a teacher: give teacher_model")
        if self.uses_teacher is False and teacher_model is not None:
            raise ValueError(
                f"{type(self).__name__} trains without a teacher ({self.method_name}) and would ignore the teacher "
                "given: leave teacher_model out (distill_glue.py: no --teacher_model_name_or_path)"
            )
        if teacher_model is not None:
            check_same_vocabulary(teacher_model.config, model.config)
            if teacher_model.config.num_labels != model.config.num_labels:
                raise ValueError(
                    f"Teacher predicts {teacher_model.config.num_labels} labels but the student "
                    f"{model.config.num_labels}"
                )
        self.args = args
        # Before the wrapper, so the networks built from the student (ONE's branches, BYOT's exits) copy the start;
        # after it, for those built otherwise (DML's peers, grafting's second network).
        head_start = start_regression_heads(model, kwargs.get("train_dataset"), args.regression_head_init)
        wrapped = self.wrapper_class(
            model, self.build_loss_terms(model, teacher_model), self.build_extras(model, teacher_model)
        )
        more = start_regression_heads(wrapped, kwargs.get("train_dataset"), args.regression_head_init)
        if more is not None:
            head_start = {**more, "layers": (head_start or {}).get("layers", []) + more["layers"]}
        self.regression_head_start: dict[str, Any] | None = head_start
        # Exactly the layers the active attention terms read record scores (the slower fp32 path); with none, both
        # models go back to plain SDPA, e.g. for a prediction stage after an intermediate one on the same models.
        for side, layers in ((teacher_model, wrapped.teacher_attention_layers),
                             (model, wrapped.student_attention_layers)):  # fmt: skip
            if side is None:
                continue
            if layers:
                record_attention_scores(side, list(layers))
            else:
                stop_recording_attention_scores(side)
        super().__init__(model=wrapped, args=args, **kwargs)

        self.teacher = None
        if teacher_model is not None:
            for parameter in teacher_model.parameters():
                parameter.requires_grad_(False)
            teacher_model.eval()
            self.teacher = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        self.teacher_output_cache: TeacherOutputCache | None = None
        self.speed_levers: dict[str, LeverChoice] = args.lever_choices()
        self._choose_teacher_caches()
        log_choices(self.speed_levers)
        # The teacher's one pass over the training set, timed (also when the cache is only reopened): what the cache
        # costs up front, next to what it saves every epoch.
        start = time.perf_counter()
        if self.speed_levers["cache_teacher_outputs"].value:
            self.train_dataset = self._with_teacher_outputs(self.train_dataset)
        elif self.speed_levers["cache_teacher_logits"].value:
            self.train_dataset = self._with_teacher_logits(self.train_dataset)
        self.teacher_cache_seconds = time.perf_counter() - start
        self._loss_sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.args.device))
        self._loss_count = 0
        self.sparsity_report: dict[str, Any] | None = None
        if args.sparsity > 0:
            self.add_callback(
                SparsityCallback(
                    self.student, args.sparsity, args.pruning_start, args.pruning_end, args.pruning_frequency
                )
            )

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

    @classmethod
    def configure_for_task(cls, args: DistillationTrainingConfig, task) -> None:
        """Fill settings a GLUE task determines and the user left unset (`distill_glue.py` calls it before the
        stages are split); nothing by default. Data-free distillation takes a regression task's target range."""

    @classmethod
    def script_kwargs(cls, args: DistillationTrainingConfig, source: PreTrainedModel) -> dict[str, Any]:
        """Extra constructor arguments `distill_glue.py` passes, given the model the student was built from (the
        teacher or `--student_layers_from`); DML builds its peers from it. None by default."""
        return {}

    def extra_network_names(self) -> list[str]:
        """Networks trained besides the student that are results in their own right (DML's peers, ONE's branches);
        `distill_glue.py` saves each as a plain checkpoint in `<output_dir>/<name>` with its metrics and card."""
        return []

    def extra_network(self, name: str) -> PreTrainedModel:
        """The extra network `name` as a plain model (see [`extra_network_names`])."""
        raise KeyError(f"{type(self).__name__} trains no extra network {name!r}")

    def save_extra_network(self, name: str, folder: str, task, eval_datasets: dict) -> dict[str, float]:
        """Save the extra network `name` as a plain checkpoint (with the tokenizer) in `folder`, with its dev metrics
        (`eval_results.json`, every split of `eval_datasets`) and model card; returns the metrics."""
        network = self.extra_network(name)
        wrapper = self.accelerator.unwrap_model(self.model)
        student = wrapper.student
        wrapper.student = network  # evaluation runs the wrapper's student
        try:
            # logged under the network's own prefix (not mixed with the student's eval_*), saved as eval_*
            logged = glue_dev_metrics(self, eval_datasets, prefix=f"{name}_eval")
        finally:
            wrapper.student = student
        metrics = {"eval" + key.removeprefix(f"{name}_eval"): value for key, value in logged.items()}
        if self.is_world_process_zero():
            network.save_pretrained(folder)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(folder)
            with open(os.path.join(folder, "eval_results.json"), "w") as f:
                json.dump(metrics, f, indent=2)
        self.create_model_card(task_name=task.name, metrics=metrics, model=network, output_dir=folder)
        return metrics

    @classmethod
    def check_one_stage(cls, stage: str | None, stages: tuple[str, ...]) -> None:
        """Refuse a stage this trainer does not run by itself (`"both"` is split by the config's `split_stages`)."""
        if stage not in stages:
            raise ValueError(
                f"{cls.__name__} runs one stage ({' or '.join(stages)}); for stage {stage!r} run the configs of "
                "args.split_stages() in turn, as distill_glue.py does"
            )

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
        `proj=True`, or between different widths; see `bertdistill.layer_matching`) and its losses' parts (VID's
        regressor and variances, FT's paraphraser and translator, AB's connector). None for logit distillation and
        teacher-free schemes."""
        if teacher is None:
            return nn.ModuleDict()
        return build_match_modules(
            self.layer_map, student.config, teacher.config, self.default_losses, self.shared_projection()
        )

    def shared_projection(self) -> bool:
        """Whether projected matches share one projection (TinyBERT's option); one per match by default."""
        return False

    # ---- training -----------------------------------------------------------------------------------------------

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    # ---- speed levers: which teacher cache --------------------------------------------------------------------

    def _choose_teacher_caches(self) -> None:
        """Resolve `cache_teacher_outputs`, then `cache_teacher_logits`, into `self.speed_levers`. An unset lever is
        on where it qualifies (the reasons are in the config's docstring); `True` where it does not is refused here,
        with the reason, before any teacher pass."""
        args, wrapper = self.args, self.accelerator.unwrap_model(self.model)
        logit_only = not (wrapper.needs_hidden_states or wrapper.needs_attentions)
        why_not = self._why_no_teacher_cache(wrapper)
        self._output_cache_plan = None
        if why_not is None and logit_only:
            why_not = "the loss reads only the teacher's logits (cache_teacher_logits covers it)"
        if why_not is None and args.cache_teacher_logits:
            why_not = "cache_teacher_logits was asked for (one teacher cache at a time)"
        if why_not is None:
            self._output_cache_plan = self._plan_teacher_output_cache(wrapper)
            why_not = self._output_cache_plan.refusal(args.teacher_cache_max_gb)
        if args.cache_teacher_outputs and why_not is not None:
            raise ValueError(f"cache_teacher_outputs: {why_not}")
        if args.cache_teacher_outputs is None and why_not is None and not self._output_cache_plan.exists:
            passes = self._passes_over_train_set()
            if passes <= 1:
                why_not = f"training reads each row at most once ({passes:.2f} passes): the teacher runs once anyway"
        outputs = choose(
            args.cache_teacher_outputs,
            why_not is None,
            why_not
            or f"the teacher runs once instead of every epoch ({self._output_cache_plan.bytes / 2**30:.2f} "
            f"GB in {self._output_cache_plan.folder})",
        )
        self.speed_levers["cache_teacher_outputs"] = outputs

        why_not = self._why_no_teacher_cache(wrapper)
        if outputs.value:
            why_not = "cache_teacher_outputs holds the logits too"
        elif why_not is None and not logit_only:
            why_not = (
                "the loss reads the teacher's hidden states or attentions, not only its logits; cache only logit-only "
                "losses (method kd, TinyBERT's prediction stage), or use cache_teacher_outputs"
            )
        if args.cache_teacher_logits and why_not is not None:
            raise ValueError(f"cache_teacher_logits: {why_not}")
        self.speed_levers["cache_teacher_logits"] = choose(
            args.cache_teacher_logits,
            why_not is None,
            why_not or "logit-only loss: the teacher runs once instead of every epoch",
        )

    def _why_no_teacher_cache(self, wrapper: DistillationModel) -> str | None:
        """Why no teacher output may be cached for this run (`None`: nothing against it)."""
        if not wrapper.needs_teacher:
            return "the loss does not run the teacher"
        if type(self).compute_loss is not DistillationTrainer.compute_loss:
            return (
                f"{type(self).__name__} runs the teacher its own way (its compute_loss; DynaBERT runs it at each "
                "sub-network's width and reads whichever layers the sub-network keeps)"
            )
        if not type(wrapper.student).__name__.endswith("ForSequenceClassification"):
            return (
                f"the student is a {type(wrapper.student).__name__}, not a sequence classifier (masked-LM inputs "
                "change every epoch)"
            )
        if not isinstance(self.train_dataset, datasets.Dataset):
            return f"the training set is not a datasets.Dataset but an {type(self.train_dataset).__name__}"
        if wrapper.needs_hidden_states and wrapper.teacher_hidden_layers is None:
            return "the loss may read any teacher layer, so no set of layers to keep is known in advance"
        if wrapper.needs_attentions and not wrapper.teacher_attention_layers:
            return "the loss reads attentions of layers that are not recorded (bertdistill.attention)"
        if wrapper.teacher_ffn_layers:
            return "the loss reads the teacher's FFN pre-activations (loss 'ab'), which no teacher cache keeps"
        return None

    def _plan_teacher_output_cache(self, wrapper: DistillationModel):
        teacher = self.accelerator.unwrap_model(self.teacher)
        spec = CacheSpec(
            hidden_layers=tuple(wrapper.teacher_hidden_layers or ()) if wrapper.needs_hidden_states else (),
            attention_layers=tuple(wrapper.teacher_attention_layers),
            num_hidden_layers=teacher.config.num_hidden_layers,
            hidden_size=teacher.config.hidden_size,
            num_heads=teacher.config.num_attention_heads,
            num_labels=teacher.config.num_labels,
            precision=str(self.accelerator.mixed_precision),
        )
        return plan_cache(self.train_dataset, teacher, spec, self.args.teacher_cache_dir)

    def _passes_over_train_set(self) -> float:
        """How many times training reads each row: the epochs, or what `max_steps` amounts to."""
        args = self.args
        if args.max_steps > 0:
            rows_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            return args.max_steps * rows_per_step / max(len(self.train_dataset), 1)
        return float(args.num_train_epochs)

    def _with_teacher_outputs(self, dataset):
        """The training set with a `teacher_row` column, after writing (main process first; the others then read
        it) or reopening its teacher-output cache."""
        plan = self._output_cache_plan
        with self.args.main_process_first(desc="teacher outputs"):
            self.teacher_output_cache = write_cache(
                plan, dataset, self.teacher, self.data_collator, self.args.per_device_eval_batch_size, self.args.device
            )
        if TEACHER_ROW_COLUMN in dataset.column_names:  # a training set taken from an earlier trainer
            dataset = dataset.remove_columns(TEACHER_ROW_COLUMN)
        return dataset.add_column(TEACHER_ROW_COLUMN, list(range(len(dataset))))

    def _set_signature_columns_if_needed(self) -> None:
        # The row index is no input of the model; it only finds a row's cached teacher outputs (see compute_loss).
        # The teachers' own encodings are read by the teacher alone (see teacher_input_columns).
        super()._set_signature_columns_if_needed()
        for column in (TEACHER_ROW_COLUMN, *self.teacher_input_columns()):
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def teacher_input_columns(self) -> list[str]:
        """Batch columns only the teacher reads (a multi-teacher ensemble's own-token encodings); none by default.
        The student's forward never receives them."""
        return []

    def _get_eval_sampler(self, eval_dataset):
        # transformers length-groups evaluation too under group_by_length, which hands predictions back out of the
        # dataset's order; evaluation keeps its order here whatever the training sampler.
        if self.args.train_sampling_strategy != "group_by_length" or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        if not has_length(eval_dataset) or self.args.world_size > 1:
            return None
        return SequentialSampler(eval_dataset)

    def train(self, *args, **kwargs):
        """`Trainer.train`; its metrics also carry `speed_levers` (each lever's value, who chose it and why), which
        `save_metrics("train", ...)` writes into `train_results.json`, and with `sparsity` the achieved sparsity of
        the pruned layers (`sparsity`, details in `sparsity_report`)."""
        if self.args.sparsity > 0:
            self._add_sparsity_masks()
        output = super().train(*args, **kwargs)
        output.metrics["speed_levers"] = {name: choice.to_dict() for name, choice in self.speed_levers.items()}
        output.metrics["teacher_cache_s"] = round(self.teacher_cache_seconds, 3)
        if self.args.sparsity > 0:
            output.metrics.update(self._remove_sparsity_masks())
        return output

    def _add_sparsity_masks(self) -> None:
        # Here rather than in __init__: a subclass may still change the student's layers after ours (DynaBERT makes
        # them elastic, which add_sparsity_masks refuses), and resuming loads the masks right after this.
        add_sparsity_masks(self.student, self.args.pruning_method)
        scores = movement_scores(self.student)
        if scores and self.optimizer is not None:
            optimised = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
            if not all(id(score) in optimised for score in scores):
                raise ValueError(
                    "Movement pruning trains importance scores that train() adds to the student, but the optimizer "
                    "was built before them; let the trainer build it (no `optimizers=` argument)"
                )

    def _remove_sparsity_masks(self) -> dict[str, Any]:
        """Multiply the masks into the student's weights; the metrics of what was reached."""
        layers = remove_sparsity_masks(self.student)
        summary = summarize_sparsity(layers, self.student)
        self.sparsity_report = {
            "method": self.args.pruning_method,
            "target": self.args.sparsity,
            **summary,
            "schedule": f"cubic from {self.args.pruning_start:g} to {self.args.pruning_end:g} of the steps, masks "
            f"updated every {self.args.pruning_frequency} steps",
        }
        if summary["sparsity"] < self.args.sparsity - 0.01:
            logger.warning(
                f"The student's pruned layers are {summary['sparsity']:.1%} sparse, less than the "
                f"{self.args.sparsity:.1%} asked for: training stopped before the schedule ended, or the best model "
                "loaded at the end is an earlier checkpoint"
            )
        return {"sparsity": round(summary["sparsity"], 6), "sparsity_report": self.sparsity_report}

    def create_optimizer(self, model=None):
        """`Trainer.create_optimizer`, with each of [`own_parameter_groups`] in a group of its own (its learning
        rate, no weight decay)."""
        if self.optimizer is not None:
            return self.optimizer
        groups = [(params, lr) for params, lr in self.own_parameter_groups() if params]
        if not groups:
            return super().create_optimizer(model)
        # Frozen for a moment, these stay out of transformers' decay / no-decay groups.
        own = [p for params, _ in groups for p in params]
        for p in own:
            p.requires_grad_(False)
        try:
            optimizer = super().create_optimizer(model)
        finally:
            for p in own:
                p.requires_grad_(True)
        for params, lr in groups:
            optimizer.add_param_group({"params": params, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def own_parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """`(parameters, learning rate)` pairs trained in optimizer groups of their own, without weight decay:
        movement pruning's scores (`movement_scores_lr`) here; data-free distillation adds its generator."""
        return [(movement_scores(self.student), self.args.movement_scores_lr)]

    def _with_teacher_logits(self, dataset):
        """The training set with the teacher's logits as a column (`cache_teacher_logits`; `_choose_teacher_caches`
        has checked that the loss needs nothing else of the teacher and that a row's teacher input is the same every
        epoch)."""
        teacher = self.accelerator.unwrap_model(self.teacher)
        extra = tuple(self.teacher_input_columns())
        with self.args.main_process_first(desc="teacher logits"):
            dataset = add_teacher_logits(
                dataset, teacher, self.data_collator, self.args.per_device_eval_batch_size, self.args.device, extra
            )
        # the teachers' own encodings served only to compute the cached logits
        return dataset.remove_columns([c for c in extra if c in dataset.column_names])

    def _teacher_outputs(self, wrapper: DistillationModel, inputs: dict[str, torch.Tensor], rows=None):
        """The teacher's outputs for a batch: none when no active term reads them or the batch carries cached logits,
        the cached outputs of `rows` (the batch's `teacher_row` values) when there is a teacher-output cache, else a
        live teacher forward."""
        if not wrapper.needs_teacher or TEACHER_LOGITS_COLUMN in inputs:
            return None
        if rows is not None and self.teacher_output_cache is not None:
            outputs = self.teacher_output_cache.outputs(rows, inputs["attention_mask"], self.args.device)
            # The live teacher hands back only what it was asked for; so does the cache (the terms check for None).
            if not wrapper.needs_hidden_states:
                outputs.hidden_states = None
            if not wrapper.needs_attentions:
                outputs.attentions = None
            return outputs
        teacher = self.accelerator.unwrap_model(self.teacher)
        with torch.no_grad(), recording_ffn_inputs(teacher, wrapper.teacher_ffn_layers) as ffn:
            outputs = self.teacher(
                **{k: v for k, v in inputs.items() if k != "labels"},
                output_hidden_states=wrapper.needs_hidden_states,
                output_attentions=wrapper.needs_attentions,
            )
        if ffn:
            outputs.ffn = ffn
        return outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rows = inputs.pop(TEACHER_ROW_COLUMN, None)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        teacher_outputs = self._teacher_outputs(self.accelerator.unwrap_model(model), inputs, rows)
        outputs = self._distill_forward(model, inputs, teacher_outputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _distill_forward(self, model, inputs, teacher_outputs):
        """The wrapper's training forward; its loss components are kept for the next log."""
        teacher_only = set(self.teacher_input_columns())
        inputs = {k: v for k, v in inputs.items() if k not in teacher_only}
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

    def speed_lever_rows(self) -> dict[str, str]:
        return {name: choice.describe() for name, choice in self.speed_levers.items()}

    def card_model(self) -> PreTrainedModel:
        return self.student

    def create_model_card(self, *args, **kwargs) -> None:
        """The card of [`ModelCardMixin`], plus a section on the sparsity reached when the student was pruned."""
        super().create_model_card(*args, **kwargs)
        if self.sparsity_report is None or not self.is_world_process_zero():
            return
        report = self.sparsity_report
        lines = [
            "",
            "## Sparsity",
            "",
            f"Unstructured {report['method']} pruning of the encoder's {report['pruned_layers']} linear layers "
            "(query, key, value, attention output, FFN in and out; embeddings, pooler and classifier dense), "
            f"{report['schedule']}. The weights are stored dense, zeros included.",
            "",
            "| | value |",
            "|---|---|",
            f"| target sparsity | {report['target']:.4f} |",
            f"| achieved sparsity | {report['sparsity']:.4f} ({report['zero_weights']:,} of "
            f"{report['pruned_layer_weights']:,} weights) |",
            f"| least / most sparse layer | {report['min_layer_sparsity']:.4f} / {report['max_layer_sparsity']:.4f} |",
        ]
        output_dir = kwargs.get("output_dir") or self.args.output_dir
        with open(os.path.join(output_dir, "README.md"), "a", encoding="utf-8") as card:
            card.write("\n".join(lines) + "\n")

    def card_base(self) -> tuple[str | None, PreTrainedModel | None]:
        if self.teacher is None:
            return self.student.name_or_path, None
        teacher = self.accelerator.unwrap_model(self.teacher)
        return teacher.name_or_path, teacher
