"""The padding policy every loss over tokens follows, and the pooling the sentence-level losses use.

Padded positions never count; a sequence's loss is the mean over its real tokens (for attention, its real query-key
pairs), and a batch's loss is the mean over its sequences. So a loss does not depend on how much a batch is padded,
and splitting a batch into gradient-accumulation steps does not change it.
"""

from __future__ import annotations

import torch


def sequence_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The padding policy: `values` `(B, L)` (one value per token) averaged over each sequence's real tokens, then
    over the batch; without a mask, the mean of every value."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.device, values.dtype)
    return ((values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def zero_padding(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`states` `(B, L, ...)` in float32 with the padded tokens set to 0 (unchanged without a mask)."""
    states = states.float()
    if mask is None:
        return states
    return states * mask.to(states.device, states.dtype).reshape(*mask.shape, *([1] * (states.dim() - 2)))


def sentence_vectors(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One vector per example for the losses between examples: `(B, H)` as given, or the mean of `(B, L, H)` token
    states over each sequence's real tokens. The mean, not [CLS]: every token's state takes part, as the flattened
    activation map does in the CNN papers, without comparing token t of one sentence with token t of another."""
    if states.dim() == 2:
        return states.float()
    if mask is None:
        return states.float().mean(dim=1)
    weights = mask.to(states.device, torch.float32)
    return (zero_padding(states, mask)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1)


def token_counts(mask: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor:
    """Real tokens per sequence `(B,)` (the full length without a mask)."""
    if mask is None:
        return torch.full((states.shape[0],), states.shape[1], device=states.device, dtype=torch.float32)
    return mask.to(states.device, torch.float32).sum(dim=1).clamp(min=1)
