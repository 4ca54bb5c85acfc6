"""Configuration of filter / knowledge grafting (Meng et al. 2020, arXiv 2001.05868)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig
from .dml_config import parse_peer_layers

GRAFT_TENSORS = ("encoder_linear", "all")


@dataclass
class GraftingConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`GraftingTrainer`]: no teacher; `graft_networks` networks of the same shape train side by side
    on the labels, and at intervals each grafts the weights of the previous one (cyclically) into its own, tensor by
    tensor, weighted by how much information (entropy) each tensor holds.

    Grafting network `i` from network `i - 1`, for every grafted tensor: `W_i <- a W_i + (1 - a) W_{i-1}` with
    `a = graft_A / pi * arctan(graft_c * (H(W_i) - H(W_{i-1}))) + 0.5`, `H` the entropy of the tensor's values in
    `graft_bins` equal-width bins between its minimum and maximum; all networks graft from the weights before the
    round. The authors' code divides `A` by `pi` (so `a` stays in (0.5 - A/2, 0.5 + A/2)), grafts the convolution
    weights only and rounds `a` to 2 decimals; this follows it without the rounding, the encoder's linear weights
    taking the convolutions' place (`graft_tensors="all"`: every tensor). The paper writes `a = A arctan(c (H_1 -
    H_2)) + 0.5`. Its networks also differ in their initial learning rates; here they differ in their initial weights
    (`graft_peer_layers`, `graft_peers_from`, or fresh classifiers) and dropout.

    Args:
        graft_networks (`int`, *optional*, defaults to `2`): networks, the student included (>= 2).
        graft_every_steps (`int`, *optional*): graft every this many optimizer steps; default: at the end of every
            epoch (the authors' code).
        graft_A (`float`, *optional*, defaults to `0.4`), graft_c (`float`, *optional*, defaults to `500`): the
            coefficient's constants (the authors' defaults).
        graft_bins (`int`, *optional*, defaults to `10`): bins of the entropy histogram.
        graft_tensors (`str`, *optional*, defaults to `"encoder_linear"`): `"encoder_linear"` (the 2-D weights of the
            encoder's layers) or `"all"`.
        graft_peer_layers (`str`, *optional*): each other network's 0-based layers of the student's source
            (`"0,2,4"`, `;`-separated for more), the same number as the student's. Grafting averages weights, so the
            networks should start from the same weights (the paper's share their initialisation): give the student's
            own layers. From different layers the average mixes unrelated weights: on STS-B, layers 1, 3, 5 grafted
            with 0, 2, 4 scored Pearson 0.285 against 0.681 from 1, 3, 5 twice (docs/self_distillation_notes.md).
        graft_peers_from (`str`, *optional*): the other networks' checkpoints, comma-separated.
        alpha_ce (`float`, *optional*, defaults to `1.0`): weight of each network's loss on the labels.
    """

    graft_networks: int = field(default=2, metadata={"help": "Networks trained and grafted, the student included."})
    graft_every_steps: int | None = field(default=None, metadata={"help": "Graft every N steps (default: per epoch)."})
    graft_A: float = field(default=0.4, metadata={"help": "A of the grafting coefficient (authors: 0.4)."})
    graft_c: float = field(default=500.0, metadata={"help": "c of the grafting coefficient (authors: 500)."})
    graft_bins: int = field(default=10, metadata={"help": "Bins of the weight-entropy histogram."})
    graft_tensors: str = field(default="encoder_linear", metadata={"help": "encoder_linear or all."})
    graft_peer_layers: str | None = field(default=None, metadata={"help": "Other networks' source layers: '0,2,4'."})
    graft_peers_from: str | None = field(default=None, metadata={"help": "Other networks' checkpoints."})
    alpha_ce: float = field(default=1.0, metadata={"help": "Weight of each network's loss on the labels."})

    def __post_init__(self):
        super().__post_init__()
        if self.graft_networks < 2:
            raise ValueError(f"Grafting needs at least 2 networks, got graft_networks={self.graft_networks}")
        given = len(parse_peer_layers(self.graft_peer_layers)) or len(self.peer_checkpoints())
        if self.graft_peer_layers and self.graft_peers_from:
            raise ValueError("Give the other networks by graft_peer_layers or by graft_peers_from, not both")
        if given and given != self.graft_networks - 1:
            raise ValueError(f"graft_networks={self.graft_networks} needs {self.graft_networks - 1} other networks, "
                             f"{given} are given")  # fmt: skip
        if self.graft_every_steps is not None and self.graft_every_steps < 1:
            raise ValueError(f"graft_every_steps must be >= 1, got {self.graft_every_steps}")
        if self.graft_bins < 2:
            raise ValueError(f"graft_bins must be >= 2, got {self.graft_bins}")
        if not 0 <= self.graft_A <= 1:
            raise ValueError(f"graft_A must be in [0, 1] (the coefficient stays in [0, 1]), got {self.graft_A}")
        if self.graft_tensors not in GRAFT_TENSORS:
            raise ValueError(f"graft_tensors must be one of {', '.join(GRAFT_TENSORS)}, got {self.graft_tensors!r}")

    def peer_checkpoints(self) -> list[str]:
        return [path.strip() for path in (self.graft_peers_from or "").split(",") if path.strip()]
