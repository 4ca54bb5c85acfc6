"""Configuration of data-distortion guided self-distillation, DDGSD (Xu and Liu, AAAI 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..distortion import DISTORTIONS
from .distillation_config import DistillationTrainingConfig


@dataclass
class DDGSDConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`DDGSDTrainer`]: no teacher; two distorted views of every input (`bertdistill.distortion`)
    go through the network, which learns the labels on both and to make the two views agree.

    Loss: `alpha_ce * (CE(z_1, y) + CE(z_2, y)) + alpha_kd * T^2 * (KL(p_2 || p_1) + KL(p_1 || p_2))
    + ddgsd_mmd_weight * MMD^2(f_1, f_2)`, where `z_v`, `p_v` are view `v`'s logits and probabilities at
    temperature `T` and `f_v` its final-layer [CLS] vectors over the batch. `MMD^2` is the linear-kernel estimate,
    the squared distance between the two views' mean vectors (the paper matches the views' global feature
    distributions by MMD). In each KL direction the target view is detached (`ddgsd_detach_targets`), so each view
    learns from the other as from a teacher; `False` lets both sides of each KL train. Regression: MSE between the
    views' outputs instead of the KLs.

    Args:
        alpha_ce (`float`, *optional*, defaults to `1.0`): weight of each view's loss on the labels.
        alpha_kd (`float`, *optional*, defaults to `1.0`): weight of the two KL directions between the views.
        temperature (`float`, *optional*, defaults to `1.0`): softmax temperature of the KLs.
        ddgsd_mmd_weight (`float`, *optional*, defaults to `1.0`): weight of the MMD between the views' features.
            A constant [CLS] state minimises it; on STS-B (regression) it cost 11 Pearson points (-18.0 against the
            network trained alone with it, -6.7 without, docs/self_distillation_notes.md): set 0 for regression.
        ddgsd_distortion (`str`, *optional*, defaults to `"mask"`): `"mask"`, `"drop"`, `"substitute"` or `"mixed"`.
        ddgsd_rate (`float`, *optional*, defaults to `0.1`): share of each row's real tokens distorted, in [0, 1).
        ddgsd_detach_targets (`bool`, *optional*, defaults to `True`): see above.
    """

    alpha_ce: float = field(default=1.0, metadata={"help": "Weight of each view's loss on the labels."})
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the two KL directions between the views."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the KLs between the views."})
    ddgsd_mmd_weight: float = field(default=1.0, metadata={"help": "Weight of the MMD between the views' features."})
    ddgsd_distortion: str = field(default="mask", metadata={"help": f"One of {', '.join(DISTORTIONS)}."})
    ddgsd_rate: float = field(default=0.1, metadata={"help": "Share of real tokens distorted in each view."})
    ddgsd_detach_targets: bool = field(default=True, metadata={"help": "Detach the target view of each KL."})

    def __post_init__(self):
        super().__post_init__()
        if self.ddgsd_distortion not in DISTORTIONS:
            raise ValueError(
                f"ddgsd_distortion must be one of {', '.join(DISTORTIONS)}, got {self.ddgsd_distortion!r}"
            )
        if not 0 <= self.ddgsd_rate < 1:
            raise ValueError(f"ddgsd_rate must be in [0, 1), got {self.ddgsd_rate}")
        if self.ddgsd_mmd_weight < 0:
            raise ValueError(f"ddgsd_mmd_weight must be >= 0, got {self.ddgsd_mmd_weight}")
