"""Losses on the output layer: soft targets (Hinton et al. 2015), TinyBERT's soft cross-entropy, MSE for
regression, and the loss on the gold labels.

Shapes: `B` batch, `C` classes (1 for regression), `L` tokens, `V` vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register_loss


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


@register_loss("soft_ce")
def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """TinyBERT's prediction-layer loss: `-softmax(z_T / t) . log_softmax(z_S / t)`, mean over the batch.

    Unlike [`soft_target_kl`] it keeps the teacher's entropy (a constant) and has no `t^2` factor, as in the paper.

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)`): student logits.
        teacher_logits (`torch.Tensor` of shape `(B, C)`): teacher logits.
        temperature (`float`, *optional*, defaults to 1.0): softmax temperature `t > 0`.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    teacher_probs = F.softmax(teacher_logits.float() / temperature, dim=-1)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum(dim=-1).mean()
