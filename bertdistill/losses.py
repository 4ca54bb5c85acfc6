"""Distillation losses as pure functions of tensors, and a registry that names them.

Shapes: `B` batch, `C` classes (1 for regression).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable[..., torch.Tensor]] = {}


def register_loss(name: str, fn: Callable[..., torch.Tensor] | None = None):
    """Register `fn` under `name` (usable as a decorator); a name can be registered once."""

    def add(f: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in LOSSES:
            raise ValueError(f"Loss {name!r} is already registered")
        LOSSES[name] = f
        return f

    return add(fn) if fn is not None else add


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered under `name`; unknown names raise with the list of valid ones."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}. Registered losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


@register_loss("kl")
def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Hinton et al. (2015) soft-target loss: `T^2 * KL(softmax(z_T / T) || softmax(z_S / T))`, mean over the batch.

    The `T^2` factor keeps the gradient scale independent of the temperature, so the weight of this term does not
    have to be retuned when `T` changes.

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)`): student logits.
        teacher_logits (`torch.Tensor` of shape `(B, C)`): teacher logits (no gradient needed).
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature `T > 0`.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


@register_loss("mse")
def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between student and teacher outputs, used for regression tasks (STS-B).

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)`): student outputs.
        teacher_logits (`torch.Tensor` of shape `(B, C)`): teacher outputs.

    Returns:
        `torch.Tensor`: scalar loss, the mean over every element.
    """
    return F.mse_loss(student_logits.float(), teacher_logits.float())


@register_loss("hard")
def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Loss against the gold labels: cross-entropy for classification, MSE for regression (`C == 1`).

    Args:
        logits (`torch.Tensor` of shape `(B, C)`): student logits.
        labels (`torch.Tensor` of shape `(B,)`): class ids (`long`) or regression targets (`float`).

    Returns:
        `torch.Tensor`: scalar loss, mean over the batch.
    """
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float(), labels)
