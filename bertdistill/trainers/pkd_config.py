"""Configuration of Patient Knowledge Distillation (Sun et al. 2019, arXiv 1908.09355)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig


@dataclass
class PatientKDConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`PatientKDTrainer`].

    Loss: `(1 - alpha) * CE + alpha * T^2 * KL + beta * L_PT`, where
    `L_PT = mean over the batch of [sum over mapped layers j of || h_S,j / ||h_S,j|| - h_T,g(j) / ||h_T,g(j)|| ||^2]`
    on the [CLS] vectors. The paper sums over layers and examples; we sum over layers and average over examples so
    that `beta` does not change with the batch size. With `pt_reduction="mean"` the layers are averaged too, which
    divides the effective weight by the number of mapped layers (M - 1 for the PKD presets): a `beta` tuned with one
    reduction (or in another implementation) does not transfer to the other without that factor.

    Args:
        alpha (`float`, *optional*):
            The paper's `alpha`: sets `alpha_kd = alpha` and `alpha_ce = 1 - alpha`. Leave unset to give `alpha_ce`
            and `alpha_kd` separately.
        beta (`float`, *optional*, defaults to `100.0`):
            Weight of the patient loss; the paper searched {10, 100, 500, 1000}.
        layer_map (`str`, *optional*, defaults to `"pkd-skip"`):
            `"pkd-skip"` (every N/M-th teacher layer: 12 -> 6 uses 2, 4, 6, 8, 10), `"pkd-last"` (the last layers
            but the top one: 7..11), another preset, `"s:t,..."` pairs, JSON or a JSON file.
        pt_reduction (`str`, *optional*, defaults to `"sum"`):
            How the mapped layers are combined: `"sum"` (the paper) or `"mean"`.
    """

    alpha: float | None = field(
        default=None, metadata={"help": "Paper's alpha: alpha_kd = alpha, alpha_ce = 1 - alpha (overrides both)."}
    )
    beta: float = field(default=100.0, metadata={"help": "Weight of the patient (normalised [CLS]) loss."})
    layer_map: str = field(
        default="pkd-skip", metadata={"help": "pkd-skip, pkd-last, another preset, 's:t,...' pairs or JSON."}
    )
    pt_reduction: str = field(default="sum", metadata={"help": "Combine mapped layers by 'sum' (paper) or 'mean'."})

    def __post_init__(self):
        if self.alpha is not None:
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
            self.alpha_kd, self.alpha_ce = self.alpha, 1 - self.alpha
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.pt_reduction not in ("sum", "mean"):
            raise ValueError(f"pt_reduction must be 'sum' or 'mean', got {self.pt_reduction!r}")
