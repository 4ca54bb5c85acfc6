"""Configuration of adversarial distillation, GAN-KD (Xu et al. 2017, arXiv 1709.00513)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distillation_config import DistillationTrainingConfig

ADVERSARIAL_FEATURES = ("logits", "cls")


@dataclass
class GANKDConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`GANKDTrainer`]: `alpha_ce` CE + `alpha_kd` T^2 KL (as `kd`) + `adv_weight` x the
    non-saturating adversarial loss against a label-conditioned discriminator (`bertdistill.adversarial`), which
    learns to tell the teacher's outputs from the student's in the same steps (its loss is logged as `loss_disc` and
    trains the discriminator only).

    Args:
        adv_feature (`str`, *optional*, defaults to `"logits"`): what the discriminator judges: the logits (the paper)
            or `"cls"`, the final-layer [CLS] vectors (the student's projected to the teacher's width when narrower).
        adv_weight (`float`, *optional*, defaults to `0.1`): weight of the student's adversarial loss (a choice of
            ours: the paper tunes its balance per dataset).
        disc_hidden_size (`int`, *optional*, defaults to `64`): width of the discriminator's two hidden layers.
        disc_spectral_norm (`bool`, *optional*, defaults to `True`): spectral normalisation of its layers.
        disc_real_target (`float`, *optional*, defaults to `0.9`): one-sided label smoothing of the teacher's target.
        disc_conditional (`bool`, *optional*, defaults to `True`): condition the discriminator on the gold label.
    """

    adv_feature: str = field(default="logits", metadata={"help": "logits (the paper) or cls (final [CLS] vector)."})
    adv_weight: float = field(default=0.1, metadata={"help": "Weight of the student's adversarial loss."})
    disc_hidden_size: int = field(default=64, metadata={"help": "Width of the discriminator's hidden layers."})
    disc_spectral_norm: bool = field(default=True, metadata={"help": "Spectral normalisation in the discriminator."})
    disc_real_target: float = field(default=0.9, metadata={"help": "One-sided label smoothing of the teacher target."})
    disc_conditional: bool = field(default=True, metadata={"help": "Condition the discriminator on the gold label."})

    def __post_init__(self):
        super().__post_init__()
        if self.adv_feature not in ADVERSARIAL_FEATURES:
            raise ValueError(f"adv_feature must be one of {', '.join(ADVERSARIAL_FEATURES)}, got {self.adv_feature!r}")
        if self.adv_weight < 0:
            raise ValueError(f"adv_weight must be >= 0, got {self.adv_weight}")
        if not 0.5 < self.disc_real_target <= 1:
            raise ValueError(f"disc_real_target must be in (0.5, 1], got {self.disc_real_target}")
        if self.disc_hidden_size < 1:
            raise ValueError(f"disc_hidden_size must be >= 1, got {self.disc_hidden_size}")
