"""Configuration of DynaBERT's width- and depth-adaptive distillation (Hou et al. 2020, arXiv 2004.04037)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compression import DEFAULT_DEPTHS, DEFAULT_WIDTHS, check_multiplier
from ..compression.importance import GRADIENTS as IMPORTANCE_GRADIENTS
from .distillation_config import DistillationTrainingConfig

STAGES = ("width", "width_depth", "final")
SCRIPT_STAGES = (*STAGES, "both")


@dataclass
class DynaBertConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`DynaBertTrainer`], one stage of DynaBERT.

    Every training step runs each sub-network of the stage on the batch (`stage="width"`: every width multiplier at
    full depth, against the fine-tuned teacher; `stage="width_depth"`: every (width, depth) pair, against the width
    stage's model at the pair's width (see `width_matched_teacher`); `stage="final"`: every (width, depth) pair on
    the gold labels alone, no teacher: the authors' optional final fine-tuning), sums their gradients and takes one
    optimiser step. The loss of a
    sub-network is `alpha_kd * soft cross-entropy(z_S / t, z_T / t)` (MSE for regression) `+ alpha_hidden * sum of
    MSE(hidden states)` over the embeddings and each kept layer's output, matched with the full model's output just
    before the next kept layer (the MSE of a sequence is over its real tokens, then averaged over the batch, so
    padding does not count) `+ alpha_ce * task loss`.

    Args:
        stage (`str`, *optional*, defaults to `"width"`): `"width"`, `"width_depth"`, `"final"`, or `"both"`
            (distill_glue.py runs the width stage into `<output_dir>-width`, then the width-and-depth stage, then the
            final fine-tuning if `final_num_train_epochs` is set; see [`split_stages`]).
        width_mult_list (`list[float]`, *optional*, defaults to `[0.25, 0.5, 0.75, 1.0]`): width multipliers;
            must include 1.0.
        depth_mult_list (`list[float]`, *optional*, defaults to `[0.5, 0.75, 1.0]`): depth multipliers of the
            width-and-depth stage; must include 1.0.
        width_num_train_epochs (`float`, *optional*): epochs of the width stage of `"both"` (default:
            `num_train_epochs`).
        width_learning_rate (`float`, *optional*): learning rate of the width stage of `"both"`.
        final_num_train_epochs (`float`, *optional*, defaults to 0): epochs of a third stage of `"both"` that
            fine-tunes every sub-network on the gold labels (task loss only, the teacher unused), as the authors'
            recipe does after the width-and-depth stage when a task has no augmented data; 0: no such stage.
        final_learning_rate (`float`, *optional*): learning rate of that stage (default: `learning_rate`).
        alpha_hidden (`float`, *optional*, defaults to 1.0): weight of the hidden-state loss (the paper's lambda_2)
            in the width-and-depth stage (the authors' `depth_lambda2`), and in the width stage when
            `width_alpha_hidden` is None.
        width_alpha_hidden (`float`, *optional*, defaults to 0.1): that weight in the width stage (the authors'
            `width_lambda2`: the width stage leans on the logits, the width-and-depth stage on the hidden states).
        width_matched_teacher (`bool`, *optional*, defaults to `True`): in the width-and-depth stage, each
            sub-network learns from the teacher (the width stage's model) at its own width and full depth, as the
            paper describes; `False`: every sub-network learns from the teacher at full width and depth, which is
            what the authors' code does (it never changes its teacher's width).
        rewire (`bool`, *optional*, defaults to `True`): before the width stage, compute head and neuron importance
            and reorder them (skipped for a model whose config says it is rewired already).
        importance_samples (`int`, *optional*, defaults to 2048): importance is computed with the task loss on the
            first this many rows of the training set (not the dev set, which stays clean for evaluation).
        importance_gradients (`str`, *optional*, defaults to `"per_batch"`): `"per_batch"` sums each batch's own
            importance; `"cumulative"` uses the gradients accumulated over the batches so far, as DynaBERT's code does
            (it never zeroes them between batches; see `bertdistill.compression.importance`).
        alpha_ce (defaults to 0.0) / alpha_kd (defaults to 1.0, the paper's lambda_1) / temperature (defaults to 1.0).
    """

    stage: str = field(default="width", metadata={"help": "width, width_depth, final or both (in turn)."})
    width_mult_list: list[float] = field(
        default_factory=lambda: list(DEFAULT_WIDTHS), metadata={"help": "Width multipliers (must include 1.0)."}
    )
    depth_mult_list: list[float] = field(
        default_factory=lambda: list(DEFAULT_DEPTHS), metadata={"help": "Depth multipliers (must include 1.0)."}
    )
    width_num_train_epochs: float | None = field(
        default=None, metadata={"help": "With stage both: epochs of the width stage (default num_train_epochs)."}
    )
    width_learning_rate: float | None = field(
        default=None, metadata={"help": "With stage both: learning rate of the width stage."}
    )
    final_num_train_epochs: float = field(
        default=0.0,
        metadata={"help": "With stage both: epochs of a last gold-label fine-tuning of every sub-network."},
    )
    final_learning_rate: float | None = field(
        default=None, metadata={"help": "With stage both: learning rate of the final fine-tuning."}
    )
    alpha_hidden: float = field(default=1.0, metadata={"help": "Weight of the hidden-state MSE (lambda_2)."})
    width_alpha_hidden: float | None = field(
        default=0.1, metadata={"help": "Weight of the hidden-state MSE in the width stage (None: alpha_hidden)."}
    )
    width_matched_teacher: bool = field(
        default=True,
        metadata={"help": "Width-and-depth stage: each sub-network learns from the teacher at its own width."},
    )
    rewire: bool = field(default=True, metadata={"help": "Reorder heads and neurons by importance first."})
    importance_samples: int = field(
        default=2048, metadata={"help": "Training rows (the first ones) that importance is computed on."}
    )
    importance_gradients: str = field(
        default="per_batch",
        metadata={"help": "per_batch, or cumulative (gradients never zeroed between batches, as DynaBERT's code)."},
    )
    alpha_ce: float = field(default=0.0, metadata={"help": "Weight of the task loss on gold labels."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the soft cross-entropy on logits (lambda_1)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the soft cross-entropy."})

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in SCRIPT_STAGES:
            raise ValueError(f"stage must be one of {SCRIPT_STAGES}, got {self.stage!r}")
        for name, what in (("width_mult_list", "Width"), ("depth_mult_list", "Depth")):
            values = sorted({float(check_multiplier(float(v), what)) for v in getattr(self, name)})
            if 1.0 not in values:
                raise ValueError(f"{name} must include 1.0 (the full model is trained too), got {values}")
            setattr(self, name, values)
        for name in ("alpha_hidden", "width_alpha_hidden"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.final_num_train_epochs < 0:
            raise ValueError(f"final_num_train_epochs must be >= 0, got {self.final_num_train_epochs}")
        if self.importance_gradients not in IMPORTANCE_GRADIENTS:
            raise ValueError(
                f"importance_gradients must be one of {IMPORTANCE_GRADIENTS}, got {self.importance_gradients!r}"
            )
        if self.importance_samples < 1:
            raise ValueError(f"importance_samples must be >= 1, got {self.importance_samples}")

    def stage_alpha_hidden(self) -> float:
        """The hidden-state loss weight of this config's stage."""
        if self.stage == "width" and self.width_alpha_hidden is not None:
            return self.width_alpha_hidden
        return self.alpha_hidden

    def settings(self) -> list[tuple[float, float]]:
        """The (width, depth) sub-networks of one training step, smallest first and the full model last."""
        depths = [1.0] if self.stage == "width" else self.depth_mult_list
        return sorted(((w, d) for d in depths for w in self.width_mult_list), key=lambda s: (s[0] * s[1], s))

    def split_stages(self) -> list[DynaBertConfig]:
        """`[self]` for one stage; for `"both"` the width stage (own epochs and learning rate, output in
        `<output_dir>-width`) and then the width-and-depth stage in `output_dir`, or, with `final_num_train_epochs`,
        the width-and-depth stage in `<output_dir>-width_depth` and the final fine-tuning in `output_dir`."""
        if self.stage != "both":
            return [self]
        width, width_depth = self.two_stages("width", "width_depth", self.width_num_train_epochs,
                                             self.width_learning_rate)  # fmt: skip
        if not self.final_num_train_epochs:
            return [width, width_depth]
        middle, final = width_depth.two_stages("width_depth", "final", None, None)
        final = final.replaced(
            num_train_epochs=self.final_num_train_epochs,
            learning_rate=self.final_learning_rate or final.learning_rate,
        )
        return [width, middle, final]
