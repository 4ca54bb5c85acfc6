"""Configuration of Patient Knowledge Distillation (Sun et al. 2019, arXiv 1908.09355)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig

# name -> (how the mapped layers combine, whether the hidden size is averaged rather than summed)
PT_REDUCTIONS = {"mse": ("mean", True), "sum": ("sum", False), "mean": ("mean", False)}


@dataclass
class PatientKDConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`PatientKDTrainer`].

    Loss: `(1 - alpha) * CE + alpha * T^2 * KL + beta * L_PT` on the L2-normalised [CLS] vectors
    `u = h / ||h||_2` of the mapped layers. By default (`pt_reduction="mse"`) `L_PT` is what the authors' code
    computes, `F.mse_loss` over the stacked normalised vectors: the mean of `(u_S - u_T)^2` over the examples, the
    mapped layers and the hidden size. The paper's grid for `beta` ({10, 100, 500, 1000}, 500 in its reported runs)
    refers to that. The paper's formula, `sum over layers of || u_S - u_T ||_2^2` (averaged over examples here, so
    that `beta` does not depend on the batch size), is `pt_reduction="sum"`; it is `H x (M - 1)` times larger (hidden
    size times mapped layers), so its `beta` must be that much smaller. `"mean"` averages that over the layers.

    Args:
        alpha (`float`, *optional*):
            The paper's `alpha`: sets `alpha_kd = alpha` and `alpha_ce = 1 - alpha`. Leave unset to give `alpha_ce`
            and `alpha_kd` separately.
        beta (`float`, *optional*, defaults to `500.0`):
            Weight of the patient loss; the paper searched {10, 100, 500, 1000} and reports 500, with the authors'
            reduction (the default `pt_reduction`). Before this default, bertdistill used `beta=100` with
            `pt_reduction="sum"`, i.e. `100 x H x (M - 1)` in these units (76,800 for 6 -> 3 at H = 384).
        layer_map (`str`, *optional*, defaults to `"pkd-skip"`):
            `"pkd-skip"` (every N/M-th teacher layer: 12 -> 6 uses 2, 4, 6, 8, 10), `"pkd-last"` (the last layers
            but the top one: 7..11), another preset, `"s:t,..."` pairs, JSON or a JSON file.
        pt_reduction (`str`, *optional*, defaults to `"mse"`):
            `"mse"` (the authors' code: mean over examples, layers and hidden size), `"sum"` (the paper's formula:
            squared L2 distance summed over layers, mean over examples) or `"mean"` (squared L2 distance averaged
            over layers and examples).
    """

    alpha: float | None = field(
        default=None, metadata={"help": "Paper's alpha: alpha_kd = alpha, alpha_ce = 1 - alpha (overrides both)."}
    )
    beta: float = field(default=500.0, metadata={"help": "Weight of the patient (normalised [CLS]) loss."})
    layer_map: str = field(
        default="pkd-skip", metadata={"help": "pkd-skip, pkd-last, another preset, 's:t,...' pairs or JSON."}
    )
    pt_reduction: str = field(
        default="mse",
        metadata={"help": "mse (authors' code: mean over examples, layers, hidden), sum (paper's formula) or mean."},
    )

    def __post_init__(self):
        if self.alpha is not None:
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
            self.alpha_kd, self.alpha_ce = self.alpha, 1 - self.alpha
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.pt_reduction not in PT_REDUCTIONS:
            raise ValueError(f"pt_reduction must be one of {', '.join(PT_REDUCTIONS)}, got {self.pt_reduction!r}")
