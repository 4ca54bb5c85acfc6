"""Distillation losses as pure functions of tensors, and the registries that name them.

Shapes: `B` batch, `C` classes (1 for regression), `L` tokens, `H` hidden size, `h` attention heads.

Two registries: `LOSSES` (any loss, by name) and `MATCH_LOSSES`, the losses a `LayerMatch` can name in its `loss`
field, each registered for the features it reads (`"hidden"`, `"attention"`) with one signature,
`fn(student_feature, teacher_feature, mask) -> scalar`.

Padding policy, the same for every loss over tokens: padded positions never count; a sequence's loss is the mean over
its real tokens (for attention, its real query-key pairs), and a batch's loss is the mean over its sequences. So a
loss does not depend on how much a batch is padded, and splitting a batch into gradient-accumulation steps does not
change it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .layer_maps import FEATURES

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


MatchLossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
MATCH_LOSSES: dict[str, dict[str, MatchLossFn]] = {}


def register_match_loss(name: str, feature: str, fn: MatchLossFn | None = None):
    """Register `fn(student_feature, teacher_feature, mask) -> scalar` as the loss `name` of `feature` matches
    (usable as a decorator). Hidden features are `(B, L, H)`, attention features `(B, h, L, L)`, `mask` `(B, L)` (1
    = real token) or `None`. A (name, feature) pair can be registered once."""
    if feature not in FEATURES:
        raise ValueError(f"Unknown feature {feature!r}; valid: {', '.join(FEATURES)}")

    def add(f: MatchLossFn) -> MatchLossFn:
        by_feature = MATCH_LOSSES.setdefault(name, {})
        if feature in by_feature:
            raise ValueError(f"Match loss {name!r} is already registered for {feature} matches")
        by_feature[feature] = f
        return f

    return add(fn) if fn is not None else add


def get_match_loss(name: str, feature: str) -> MatchLossFn:
    """The loss `name` for `feature` matches; unknown pairs raise with the names valid for that feature."""
    if feature not in MATCH_LOSSES.get(name, {}):
        valid = sorted(n for n, by_feature in MATCH_LOSSES.items() if feature in by_feature)
        raise ValueError(f"Unknown loss {name!r} for {feature} matches. Valid: {', '.join(valid)}")
    return MATCH_LOSSES[name][feature]


def sequence_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The padding policy: `values` `(B, L)` (one value per token) averaged over each sequence's real tokens, then
    over the batch; without a mask, the mean of every value."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.device, values.dtype)
    return ((values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


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
    """DistilBERT's cosine-embedding loss with target 1: `1 - cos(h_S, h_T)` per token, averaged by the padding
    policy (each sequence's real tokens, then the sequences). The authors' code averages over all real tokens of a
    batch at once, which weights long sequences more and changes with how a batch is split; with sequences of equal
    length the two agree.

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
    return sequence_mean(1 - cosine, mask)


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
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens. Given, the padding policy applies:
            each sequence's squared error is averaged over its real tokens and the hidden size, then over the batch.
            TinyBERT's code pads every batch to 128 tokens and averages over all of them, padding included; with
            dynamic padding that mean would change with each batch's padding.

    Returns:
        `torch.Tensor`: scalar; without a mask, the mean over every element.
    """
    squared = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(dim=-1)
    return sequence_mean(squared, mask)


def _key_mask(mask: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    return mask[:, None, None, :].to(scores.device).bool()


@register_loss("attention_mse")
def attention_mse(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TinyBERT's attention loss `(1/h) sum_i MSE(A_i^S, A_i^T)` on pre-softmax scores (masked positions zeroed, see
    `bertdistill.attention`).

    Args:
        student_scores (`torch.Tensor` of shape `(B, h, L, L)`): student scores.
        teacher_scores (`torch.Tensor` of shape `(B, h, L, L)`): teacher scores, same number of heads.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens. Given, the padding policy applies:
            each sequence's squared error is averaged over its real (query, key) pairs and the heads, then over the
            batch. Without it, the mean over every element (TinyBERT's code, whose batches are all padded to 128).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"Attention shapes differ: student {tuple(student_scores.shape)}, teacher {tuple(teacher_scores.shape)}; "
            "TinyBERT's attention loss needs the same number of heads"
        )
    squared = (student_scores.float() - teacher_scores.float()).pow(2)
    if mask is None:
        return squared.mean()
    keys = _key_mask(mask, squared)
    per_query = squared.masked_fill(~keys, 0.0).sum(-1) / keys.sum(-1).clamp(min=1)  # (B, h, L)
    return sequence_mean(per_query.mean(dim=1), mask)


@register_loss("attention_kl")
def attention_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Alternative attention loss on probabilities: `KL(softmax(A^T) || softmax(A^S))` per query row, over the keys
    that are not padding, averaged over the heads and, by the padding policy, over each sequence's real query rows
    and then the batch.

    Args:
        student_scores (`torch.Tensor` of shape `(B, h, L, L)`): student pre-softmax scores.
        teacher_scores (`torch.Tensor` of shape `(B, h, L, L)`): teacher pre-softmax scores.
        mask (`torch.Tensor` of shape `(B, L)`): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    keys = _key_mask(mask, student_scores)
    student = student_scores.float().masked_fill(~keys, float("-inf")).log_softmax(-1)
    teacher = teacher_scores.float().masked_fill(~keys, float("-inf")).log_softmax(-1)
    per_row = (teacher.exp() * (teacher - student)).masked_fill(~keys, 0.0).sum(-1)  # (B, h, L)
    return sequence_mean(per_row.mean(dim=1), mask)


@register_loss("pkd_mse")
def pkd_cls_mse(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Patient-KD's loss as the authors' code computes it: `F.mse_loss` between the L2-normalised [CLS] vectors, the
    mean over the examples and the hidden size (their `patience_loss` stacks the layers and averages over them too).
    The paper's `|| . ||_2^2` is the hidden size times this (see [`pkd_hidden_distance`]).

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H)` or `(B, H)`): student states ([CLS] is token 0).
        teacher_hidden (`torch.Tensor` of the same shape): teacher states of the matched layer.
        mask: unused ([CLS] is never padding); accepted for the match-loss signature.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if student_hidden.dim() == 3:
        student_hidden, teacher_hidden = student_hidden[:, 0], teacher_hidden[:, 0]
    student = F.normalize(student_hidden.float(), p=2, dim=-1)
    teacher = F.normalize(teacher_hidden.float(), p=2, dim=-1)
    return F.mse_loss(student, teacher)


register_match_loss("mse", "hidden", hidden_mse)
register_match_loss("mse", "attention", attention_mse)
register_match_loss("kl", "attention", attention_kl)
register_match_loss("cosine", "hidden", cosine_embedding_loss)
register_match_loss("pkd", "hidden", pkd_cls_mse)
