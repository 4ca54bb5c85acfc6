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


@register_loss("hidden_mse")
def hidden_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TinyBERT's embedding and hidden-state loss `MSE(H_S W, H_T)`: the caller applies the projection `W`.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_T)`): projected student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens. Given, each sequence's squared error
            is averaged over its real tokens and the hidden size, then over the batch: padding does not count, and
            the loss of a batch is the mean of its sequences' losses (so gradient accumulation does not change it).

    Returns:
        `torch.Tensor`: scalar; without a mask, the mean over every element.
    """
    if mask is None:
        return F.mse_loss(student_hidden.float(), teacher_hidden.float())
    mask = mask.to(student_hidden.device, torch.float32)
    squared = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)
    return ((squared * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


@register_loss("attention_mse")
def attention_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """TinyBERT's attention loss `(1/h) sum_i MSE(A_i^S, A_i^T)` on pre-softmax scores with masked positions zeroed
    (see `bertdistill.attention`); with equal head counts this is the mean over every element.

    Args:
        student_scores (`torch.Tensor` of shape `(B, h, L, L)`): student scores.
        teacher_scores (`torch.Tensor` of shape `(B, h, L, L)`): teacher scores.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"Attention shapes differ: student {tuple(student_scores.shape)}, teacher {tuple(teacher_scores.shape)}; "
            "TinyBERT's attention loss needs the same number of heads"
        )
    return F.mse_loss(student_scores.float(), teacher_scores.float())


@register_loss("attention_kl")
def attention_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Alternative attention loss on probabilities: `KL(softmax(A^T) || softmax(A^S))` per query row, over the keys
    that are not padding, averaged over the real query rows and heads.

    Args:
        student_scores (`torch.Tensor` of shape `(B, h, L, L)`): student pre-softmax scores.
        teacher_scores (`torch.Tensor` of shape `(B, h, L, L)`): teacher pre-softmax scores.
        mask (`torch.Tensor` of shape `(B, L)`): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    keys = mask[:, None, None, :].bool()
    student = student_scores.float().masked_fill(~keys, float("-inf")).log_softmax(-1)
    teacher = teacher_scores.float().masked_fill(~keys, float("-inf")).log_softmax(-1)
    per_row = (teacher.exp() * (teacher - student)).masked_fill(~keys, 0.0).sum(-1)  # (B, h, L)
    rows = mask[:, None, :].to(per_row.dtype).expand_as(per_row)
    return (per_row * rows).sum() / rows.sum().clamp_min(1)
