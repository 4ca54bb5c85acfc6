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
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton et al. (2015) soft-target loss: `T^2 * KL(softmax(z_T / T) || softmax(z_S / T))`, mean over rows.

    The `T^2` factor keeps the gradient scale independent of the temperature, so the weight of this term does not
    have to be retuned when `T` changes.

    Args:
        student_logits (`torch.Tensor` of shape `(..., C)`): student logits, `(B, C)` for sequence classification
            or `(B, L, V)` for masked language modelling.
        teacher_logits (`torch.Tensor` of the same shape): teacher logits (no gradient needed).
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature `T > 0`.
        mask (`torch.Tensor` of shape `(...)`, *optional*): boolean, which rows count (DistilBERT: the masked
            positions); the mean is over those rows.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if mask is not None:
        student_logits, teacher_logits = student_logits[mask], teacher_logits[mask]
    student_logits = student_logits.reshape(-1, student_logits.shape[-1])
    teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
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
        logits (`torch.Tensor` of shape `(B, C)` or `(B, L, V)`): student logits; token-level logits give the
            masked language modelling loss.
        labels (`torch.Tensor` of shape `(B,)` or `(B, L)`): class ids (`long`, -100 = ignored) or regression
            targets (`float`).

    Returns:
        `torch.Tensor`: scalar loss, mean over the batch (over the labelled tokens for token-level logits).
    """
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@register_loss("pkd")
def pkd_hidden_distance(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Patient-KD's per-layer term (Sun et al. 2019): `|| h_S / ||h_S||_2 - h_T / ||h_T||_2 ||_2^2`.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, H)`): student [CLS] vectors of one layer.
        teacher_hidden (`torch.Tensor` of shape `(B, H)`): teacher [CLS] vectors of the matched layer.

    Returns:
        `torch.Tensor` of shape `(B,)`: one distance per example; how examples and layers are combined (sum or
        mean) is the caller's choice.
    """
    student = F.normalize(student_hidden.float(), p=2, dim=-1)
    teacher = F.normalize(teacher_hidden.float(), p=2, dim=-1)
    return (student - teacher).pow(2).sum(dim=-1)


@register_loss("cosine")
def cosine_embedding_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """DistilBERT's cosine-embedding loss with target 1: `1 - cos(h_S, h_T)`, mean over the (unpadded) tokens.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H)`): student hidden states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H)`): teacher hidden states, same width.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(
            f"Cosine loss needs equal widths (student {student_hidden.shape[-1]}, teacher {teacher_hidden.shape[-1]})"
        )
    cosine = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    if mask is None:
        return (1 - cosine).mean()
    mask = mask.to(cosine.dtype)
    return ((1 - cosine) * mask).sum() / mask.sum().clamp_min(1)
