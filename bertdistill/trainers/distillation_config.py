"""Configuration of the base logit distillation (Hinton et al. 2015) on top of `TrainingArguments`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..compression.sparsity import PRUNING_METHODS, check_pruning_options
from ..speed_levers import LeverChoice, accelerator_type, choose, native_bf16
from ..task_head import check_regression_head_init

# What a prediction-layer loss on a regression task is measured against (TinyBERT's `regression_target`).
REGRESSION_TARGETS = ("teacher", "gold")
# A `bool | None` field parsed like transformers' `bool` flags: `--flag` alone means true, `--flag false` false, and
# leaving it out leaves `None` (HfArgumentParser copies a field's metadata into its `add_argument` call).
OPTIONAL_FLAG = {"nargs": "?", "const": True}
# The speed levers that are config fields: `None` lets bertdistill choose (see `bertdistill.speed_levers`).
LEVER_FIELDS = ("train_sampling_strategy", "bf16", "cache_teacher_logits", "cache_teacher_outputs")
SAMPLING_STRATEGIES = ["random", "sequential", "group_by_length", "batch_rebalance"]
DEFAULT_SAMPLING_STRATEGY = "group_by_length"


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
        train_sampling_strategy (`str`, *optional*, defaults to `"group_by_length"`):
            transformers' sampler choice; bertdistill groups batches by length unless told otherwise (`"random"` to
            turn it off): rows of similar length pad less, so a step computes fewer padded tokens. Evaluation and
            prediction keep the dataset's order whatever this says.
        bf16 (`bool`, *optional*):
            bf16 mixed precision (autocast of the student's and the teacher's forwards, fp32 weights). Unset: on
            exactly when the hardware computes bf16 natively (a CUDA GPU with native bf16, a CPU with AMX-BF16 or
            AVX512-BF16; detected by `bertdistill.speed_levers.native_bf16`, never assumed) and `fp16` is off;
            `--bf16 false` keeps fp32. On a machine without an accelerator, choosing bf16 this way also sets
            `use_cpu` (transformers asks for it with bf16 on a CPU).
        cache_teacher_logits (`bool`, *optional*):
            Compute the teacher's logits of the training set once (a `teacher_logits` column, cached on disk with the
            dataset and recomputed when the data or the teacher change) instead of running the teacher every step.
            Unset: on when the active losses read nothing but the teacher's logits (`kd`, TinyBERT's prediction
            stage), the student is a sequence classifier, the training set a `datasets.Dataset` and the trainer
            runs the teacher the standard way (not DynaBERT); `True` refuses anything else with the reason.
        cache_teacher_outputs (`bool`, *optional*):
            Run the teacher once over the training set and keep the outputs intermediate losses read (hidden states
            of the mapped layers, attention scores of the recorded layers, logits) as float16 memory-mapped files
            (see `bertdistill.teacher_output_cache`), instead of running it every step. Unset: on when the losses
            read specific teacher layers, the student is a sequence classifier, the training set a
            `datasets.Dataset`, training sees each row more than once (or the cache exists already) and it fits
            `teacher_cache_max_gb` and the free disk. `True` refuses, with the reason, what does not qualify:
            DynaBERT (its teacher runs at each sub-network's width and its loss reads any layer), masked-LM
            students, IterableDatasets, logit-only losses (use `cache_teacher_logits`) or a cache over the budget.
        teacher_cache_dir (`str`, *optional*):
            Where teacher-output caches live (one sub-folder per data x teacher x layers). Default: next to the
            training set's cache files, else `$HF_DATASETS_CACHE/bertdistill_teacher_outputs`.
        teacher_cache_max_gb (`float`, *optional*, defaults to `10.0`):
            Largest teacher-output cache to write, checked from the rows' lengths before the teacher runs.
        sparsity (`float`, *optional*, defaults to `0.0`):
            Unstructured sparsity during training (see `bertdistill.compression.sparsity`): the fraction of zero
            weights, in [0, 1), that every linear layer of the student's encoder (query, key, value, attention output,
            FFN in and out; not the embeddings, pooler or classifier) has at the end. 0 turns pruning off. The saved
            student is a stock checkpoint whose weights hold the zeros; the achieved sparsity is in `train()`'s
            metrics (`sparsity`, `sparsity_report`) and the model card.
        pruning_method (`str`, *optional*, defaults to `"magnitude"`):
            `"magnitude"`: gradual magnitude pruning (Zhu & Gupta 2017), the smallest weights of each layer zeroed.
            `"movement"`: movement pruning (Sanh et al. 2020), learned importance scores per weight (trained with a
            straight-through estimator, at `movement_scores_lr`) keep the highest-scoring weights of each layer.
        pruning_start (`float`, *optional*, defaults to `0.0`):
            Where the cubic sparsity schedule starts, as a fraction of the training steps.
        pruning_end (`float`, *optional*, defaults to `0.7`):
            Where it reaches `sparsity`, as a fraction of the training steps (> `pruning_start`, <= 1); the steps after
            it fine-tune with the final masks.
        pruning_frequency (`int`, *optional*, defaults to `10`):
            Steps between mask updates (the schedule's Δt).
        movement_scores_lr (`float`, *optional*, defaults to `0.01`):
            Learning rate of the movement scores (their own optimizer group, no weight decay, the same learning-rate
            schedule as the rest); Sanh et al.'s default.
        regression_head_init (`str`, *optional*, defaults to `"label_mean"`):
            Regression tasks (STS-B): where the output bias of every untrained regression head of the trained
            networks (bias exactly 0, as transformers initialises it; a head copied from a fine-tuned teacher keeps
            its own) starts: `"label_mean"`, the training labels' mean, or `"zero"`, transformers' initialisation.
            From 0, a network that is not fine-tuned yet can stall on the predict-the-mean plateau (see
            `bertdistill.task_head`). Recorded in the model card; nothing happens without training labels
            (data-free distillation).
    """

    alpha_ce: float = field(
        default=0.5, metadata={"help": "Weight of the loss on the gold labels (CE, MSE for stsb)."}
    )
    alpha_kd: float = field(
        default=0.5, metadata={"help": "Weight of the soft-target loss T^2 * KL(teacher/T || student/T)."}
    )
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the soft-target loss (> 0)."})
    train_sampling_strategy: str | None = field(
        default=None,
        metadata={
            "help": f"Training sampler: {', '.join(SAMPLING_STRATEGIES)}. Default: {DEFAULT_SAMPLING_STRATEGY} "
            "(batches of similar lengths pad less); random to turn it off.",
            "choices": SAMPLING_STRATEGIES,
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            **OPTIONAL_FLAG,
            "help": "bf16 mixed precision. Default: on where the hardware computes bf16 natively (CUDA with native "
            "bf16, CPUs with AMX-BF16/AVX512-BF16; detected), else off; false keeps fp32.",
        },
    )
    cache_teacher_logits: bool | None = field(
        default=None,
        metadata={
            **OPTIONAL_FLAG,
            "help": "Compute the teacher's logits of the training set once and reuse them. Default: on for "
            "logit-only losses on a sequence-classification student; false runs the teacher every step.",
        },
    )
    cache_teacher_outputs: bool | None = field(
        default=None,
        metadata={
            **OPTIONAL_FLAG,
            "help": "Run the teacher once and keep the hidden states / attention scores the losses read (fp16, "
            "memory-mapped) for every epoch. Default: on where it qualifies and fits --teacher_cache_max_gb; "
            "false runs the teacher every step.",
        },
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of teacher-output caches (default: next to the dataset cache)."},
    )
    teacher_cache_max_gb: float = field(
        default=10.0, metadata={"help": "Largest teacher-output cache to write (GB), checked before computing it."}
    )

    sparsity: float = field(
        default=0.0,
        metadata={
            "help": "Final fraction of zero weights in each linear layer of the student's encoder (embeddings and "
            "classifier stay dense), in [0, 1); 0 (default) turns pruning off."
        },
    )
    pruning_method: str = field(
        default="magnitude",
        metadata={
            "help": "Unstructured pruning method: magnitude (Zhu & Gupta 2017, smallest weights per layer) or "
            "movement (Sanh et al. 2020, learned scores per weight).",
            "choices": list(PRUNING_METHODS),
        },
    )
    pruning_start: float = field(
        default=0.0, metadata={"help": "Start of the cubic sparsity schedule, as a fraction of the training steps."}
    )
    pruning_end: float = field(
        default=0.7,
        metadata={
            "help": "End of the cubic sparsity schedule (fraction of the training steps, > pruning_start); the rest "
            "fine-tunes with the final masks."
        },
    )
    pruning_frequency: int = field(default=10, metadata={"help": "Steps between mask updates."})
    movement_scores_lr: float = field(
        default=1e-2, metadata={"help": "Learning rate of movement pruning's importance scores (no weight decay)."}
    )
    regression_head_init: str = field(
        default="label_mean",
        metadata={"help": "Where an untrained regression head's output bias starts: 'label_mean' or 'zero'."},
    )

    def __post_init__(self):
        # What the user asked for, before the levers left to bertdistill are resolved (see `replaced`).
        self._requested_levers = {name: getattr(self, name) for name in LEVER_FIELDS}
        self._lever_choices = self._choose_config_levers()
        super().__post_init__()
        if self.teacher_cache_max_gb <= 0:
            raise ValueError(f"teacher_cache_max_gb must be > 0, got {self.teacher_cache_max_gb}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("alpha_ce", "alpha_kd"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_pruning_options(
            self.sparsity, self.pruning_method, self.pruning_start, self.pruning_end, self.pruning_frequency
        )
        check_regression_head_init(self.regression_head_init)
        if self.movement_scores_lr <= 0:
            raise ValueError(f"movement_scores_lr must be > 0, got {self.movement_scores_lr}")

    def _choose_config_levers(self) -> dict[str, LeverChoice]:
        """Resolve the levers that depend on nothing but the config and the machine (sampler, bf16)."""
        sampling = choose(
            self.train_sampling_strategy,
            DEFAULT_SAMPLING_STRATEGY,
            "batches of similar lengths pad less",
            default_source="default",
        )
        self.train_sampling_strategy = sampling.value
        if self.bf16 is None and self.fp16:
            bf16 = choose(None, False, "fp16 was asked for")
        elif self.bf16 is None:
            native, reason = native_bf16(self.use_cpu)
            bf16 = choose(None, native, reason)
            if native and accelerator_type() is None:
                self.use_cpu = True  # transformers refuses bf16 without an accelerator unless use_cpu says CPU
        else:
            bf16 = choose(self.bf16, None, "")
        self.bf16 = bool(bf16.value)
        return {"train_sampling_strategy": sampling, "bf16": bf16}

    def requested_lever(self, name: str):
        """What the user asked for a speed lever (`None`: left to bertdistill)."""
        return self._requested_levers[name]

    def lever_choices(self) -> dict[str, LeverChoice]:
        """The config's speed levers as resolved (`train_sampling_strategy`, `bf16`); the trainer adds the caches."""
        return dict(self._lever_choices)

    def replaced(self, **changes) -> DistillationTrainingConfig:
        """`dataclasses.replace` that keeps the user's lever requests: a lever bertdistill chose is chosen again for
        the copy (and recorded as chosen), not passed on as if the user had set it."""
        return dataclasses.replace(self, **{**self._requested_levers, **changes})

    def split_stages(self) -> list[DistillationTrainingConfig]:
        """Configs to run one after the other on the same student; one stage unless a method says otherwise."""
        return [self]

    def two_stages(self, first: str, second: str, epochs: float | None, learning_rate: float | None) -> list:
        """`[first stage, second stage]` for a method with `stage="both"`: the first writes to
        `<output_dir>-<first>` with its own epochs and learning rate (default: this config's) and is neither pushed
        nor reloaded at its best; the second is this config in `output_dir`."""
        head = self.replaced(
            stage=first,
            output_dir=self.output_dir.rstrip("/\\") + f"-{first}",
            num_train_epochs=epochs or self.num_train_epochs,
            learning_rate=learning_rate or self.learning_rate,
            push_to_hub=False,
            load_best_model_at_end=False,
        )
        return [head, self.replaced(stage=second)]
