"""Configuration of class-wise self-knowledge distillation, CS-KD (Yun et al. 2020, arXiv 2003.13964)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..samplers import ClassPairSampler
from .distillation_config import DistillationTrainingConfig


@dataclass
class CSKDConfig(DistillationTrainingConfig):
    r"""
    Configuration for [`CSKDTrainer`]: no teacher; each example learns from the prediction the same network makes for
    another example of its class.

    Loss, per batch of `B` anchors `x` and their same-class partners `x'`:
    `alpha_ce * CE(f(x), y) + alpha_kd * T^2 * KL(softmax(f(x') / T) || softmax(f(x) / T))`, the KL summed over the
    classes and averaged over the `B` anchors, `f(x')` computed without gradient (the paper's fixed copy of the
    weights; the authors' code runs it under `torch.no_grad()`). The task loss covers the anchors only, as in the
    authors' code. Classification tasks only.

    `per_device_train_batch_size` counts anchors: every step also runs the network, without gradient, on as many
    partners (the authors' `--batch-size` has the same meaning), and an epoch takes every training row as an anchor
    once. The pairs replace the training sampler: `train_sampling_strategy` must be left unset.

    Args:
        alpha_ce (`float`, *optional*, defaults to `1.0`):
            Weight of the cross-entropy on the anchors' gold labels.
        alpha_kd (`float`, *optional*, defaults to `1.0`):
            The paper's `lambda_cls`, weight of the class-wise KL (the authors use 1 on CIFAR/TinyImageNet and 3 on
            the fine-grained sets).
        temperature (`float`, *optional*, defaults to `4.0`):
            The paper's `T` (4 in all its experiments).
        cskd_partner (`str`, *optional*, defaults to `"other"`):
            `"other"`: each partner is a row of the anchor's class other than itself (the paper: "another sample of
            the same class"). `"any"`: any row of the class, possibly the anchor itself (the authors'
            `PairBatchSampler`, `random.choice` over the class).
    """

    alpha_ce: float = field(default=1.0, metadata={"help": "Weight of the anchors' cross-entropy."})
    alpha_kd: float = field(default=1.0, metadata={"help": "lambda_cls: weight of the class-wise KL."})
    temperature: float = field(default=4.0, metadata={"help": "Softmax temperature of the class-wise KL (paper: 4)."})
    cskd_partner: str = field(
        default="other",
        metadata={"help": "other (another row of the class: the paper) or any (the anchor possible: authors' code)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.cskd_partner not in ClassPairSampler.PARTNERS:
            raise ValueError(
                f"cskd_partner must be one of {', '.join(ClassPairSampler.PARTNERS)}, got {self.cskd_partner!r}"
            )
