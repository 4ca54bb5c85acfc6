"""Configuration of DistilBERT's triple loss (Sanh et al. 2019, arXiv 1910.01108)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig


@dataclass
class DistilBertConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`DistilBertTrainer`].

    Loss: `alpha_kd * T^2 * KL(soft targets) + alpha_ce * task loss + alpha_cos * cosine loss`, where the cosine loss
    is `1 - cos(h_S, h_T)` averaged over the unpadded tokens and then over the mapped layers (by default only the
    last hidden layers). In general distillation (scripts/distill_general.py) the task loss is the masked-LM loss and
    the soft targets are the teacher's vocabulary distributions at the masked positions.

    Args:
        alpha_cos (`float`, *optional*, defaults to `1.0`):
            Weight of the cosine-embedding loss between hidden states.
        layer_map (`str`, *optional*, defaults to `"last"`):
            Which hidden states the cosine loss aligns: `"last"` (the paper), `"one-of-two"` (each student layer
            with the teacher layer it was initialised from), another preset, `"s:t,..."` pairs or JSON.
    """

    alpha_cos: float = field(default=1.0, metadata={"help": "Weight of the cosine loss between hidden states."})
    layer_map: str = field(
        default="last", metadata={"help": "Hidden states for the cosine loss: last, one-of-two, pairs or JSON."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.alpha_cos < 0:
            raise ValueError(f"alpha_cos must be >= 0, got {self.alpha_cos}")
