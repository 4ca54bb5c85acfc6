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

    The default weights are the 5 : 2 : 1 ratio (soft targets : masked LM : cosine) of the authors' released training
    recipe (`--alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0`, temperature 2), normalised to sum to 1, with the task
    loss in the masked-LM loss's place: the cosine term is a light regulariser, not half of the objective.

    Args:
        alpha_kd (`float`, *optional*, defaults to `0.625`):
            Weight of the soft-target loss `T^2 * KL`.
        alpha_ce (`float`, *optional*, defaults to `0.25`):
            Weight of the task loss (the masked-LM loss in general distillation).
        alpha_cos (`float`, *optional*, defaults to `0.125`):
            Weight of the cosine-embedding loss between hidden states.
        layer_map (`str`, *optional*, defaults to `"last"`):
            Which hidden states the cosine loss aligns: `"last"` (the paper), `"one-of-two"` (each student layer
            with the teacher layer it was initialised from), another preset, `"s:t,..."` pairs or JSON.
        restrict_kd_to_mask (`bool`, *optional*, defaults to `False`):
            General (masked-LM) mode only: take the soft-target loss at the masked positions only. By default it
            covers every real token, as the authors' code does (its `--restrict_ce_to_mask` is off in the released
            recipe); the masked-LM loss is always at the masked positions.
    """

    alpha_kd: float = field(default=0.625, metadata={"help": "Weight of the soft-target loss T^2 * KL."})
    alpha_ce: float = field(default=0.25, metadata={"help": "Weight of the task loss (masked LM in general mode)."})
    alpha_cos: float = field(default=0.125, metadata={"help": "Weight of the cosine loss between hidden states."})
    layer_map: str = field(
        default="last", metadata={"help": "Hidden states for the cosine loss: last, one-of-two, pairs or JSON."}
    )

    restrict_kd_to_mask: bool = field(
        default=False,
        metadata={"help": "General mode: soft targets at the masked positions only (default: every real token)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.alpha_cos < 0:
            raise ValueError(f"alpha_cos must be >= 0, got {self.alpha_cos}")
