"""Attention losses: TinyBERT's MSE on pre-softmax scores, KL between attention probabilities, and attention
transfer (AT, Zagoruyko and Komodakis, arXiv 1612.03928) on activation-based maps of token states or on the
attention probabilities.

Shapes: `B` batch, `h` heads, `L` tokens, `H` hidden size. Padding policy as in `bertdistill.losses.padding`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .padding import sequence_mean, zero_padding
from .registry import register_loss, register_match_loss


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


def _at_difference(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """`(Q_S / ||Q_S||_2 - Q_T / ||Q_T||_2)^2` per position, the maps `(B, P)` normalised per example."""
    return (F.normalize(student_map, p=2, dim=1) - F.normalize(teacher_map, p=2, dim=1)).pow(2)


def _token_map(states: torch.Tensor, mask: torch.Tensor | None, p: int) -> torch.Tensor:
    """AT's map of token states `(B, L)`: `sum_k |h_lk|^p` per token, padding 0."""
    return zero_padding(states, mask).abs().pow(p).sum(dim=-1)


def at_hidden_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None, p: int = 2
) -> torch.Tensor:
    """Activation-based attention transfer (Zagoruyko and Komodakis, arXiv 1612.03928) on token states.

    The paper's map of a CNN layer is `Q = sum_c |A_c|^p` over the channels, one value per spatial position; here the
    channels are hidden units and the positions tokens: `Q_l = sum_k |h_lk|^p` per token `l` (padding 0), normalised
    to unit L2 norm over the sequence, and the loss is `(Q_S / ||Q_S|| - Q_T / ||Q_T||)^2` averaged over each
    sequence's real tokens (the padding policy), then over the batch. That mean over positions is what the authors'
    code computes (`(at(x) - at(y)).pow(2).mean()`, added to the loss as `beta / 2 * at_loss` with `beta = 1000`,
    hence the default weight 500); the paper writes the 2-norm of the difference, not squared, which is
    [`at_norm_loss`] (`"at_norm"`). Since only the maps are compared, the widths may differ.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.
        p (`int`, *optional*, defaults to 2): the exponent of the map (the paper's `p = 2`).

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _token_map(student_hidden, mask, p), _token_map(teacher_hidden, mask, p)
    return sequence_mean(_at_difference(student, teacher), mask)


def at_norm_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor | None = None, p: int = 2
) -> torch.Tensor:
    """Attention transfer as the paper writes it: `|| Q_S / ||Q_S||_2 - Q_T / ||Q_T||_2 ||_2` per sequence (the
    2-norm over its real tokens, not squared), mean over the batch; the maps as in [`at_hidden_loss`]. The paper's
    `beta = 1000` divided by the map size applies to the squared form, so this one's default weight is 1.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, H_S)`): student states.
        teacher_hidden (`torch.Tensor` of shape `(B, L, H_T)`): teacher states.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.
        p (`int`, *optional*, defaults to 2): the exponent of the map.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    student, teacher = _token_map(student_hidden, mask, p), _token_map(teacher_hidden, mask, p)
    return _at_difference(student, teacher).sum(dim=1).sqrt().mean()


def at_attention_loss(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None, p: int = 2
) -> torch.Tensor:
    """Attention transfer on a transformer's own attention: the heads are the channels and the (query, key) pairs
    the positions. `Q_qk = mean_heads P_hqk^p` of the attention probabilities `P = softmax(scores)` over the real
    keys, normalised to unit L2 norm over the sequence's real pairs; the squared difference is averaged over each
    sequence's real pairs, then over the batch. The head counts may differ.

    Args:
        student_scores (`torch.Tensor` of shape `(B, h_S, L, L)`): student pre-softmax scores.
        teacher_scores (`torch.Tensor` of shape `(B, h_T, L, L)`): teacher pre-softmax scores.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1 for real tokens.
        p (`int`, *optional*, defaults to 2): the exponent of the map.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    batch, length = student_scores.shape[0], student_scores.shape[-1]
    if mask is None:
        mask = torch.ones(batch, length, device=student_scores.device)
    keys = _key_mask(mask, student_scores)
    pairs = (mask[:, :, None] * mask[:, None, :]).to(student_scores.device, torch.float32)  # (B, L, L)

    def attention_map(scores: torch.Tensor) -> torch.Tensor:
        probs = scores.float().masked_fill(~keys, float("-inf")).softmax(-1).nan_to_num(0.0)
        return (probs.pow(p).mean(dim=1) * pairs).reshape(batch, -1)

    difference = _at_difference(attention_map(student_scores), attention_map(teacher_scores)).reshape(pairs.shape)
    return ((difference * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp(min=1)).mean()


register_match_loss("mse", "attention", attention_mse, paper="arXiv 1909.10351")
register_match_loss("kl", "attention", attention_kl)
register_match_loss("at", "hidden", at_hidden_loss, width="any", weight=500.0, paper="arXiv 1612.03928")
register_match_loss("at_norm", "hidden", at_norm_loss, width="any", paper="arXiv 1612.03928")
register_match_loss("at", "attention", at_attention_loss, width="any", weight=500.0, paper="arXiv 1612.03928")
