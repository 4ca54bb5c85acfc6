"""DistilBERT's masking for general distillation: rare word pieces are masked more often than frequent ones.

The authors' code draws, in each batch, `ceil(mlm_probability * real tokens)` positions without replacement, each
with probability proportional to `count(token) ** -smoothing` (counts over the training corpus, at least 1; special
tokens and padding never), then replaces 80% of them by `[MASK]`, 10% by a random token and keeps 10%. With
`smoothing = 0` every real token is equally likely, which is BERT's masking up to the fixed count per batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

# [MASK], kept, random: the shares of the chosen positions (BERT's and DistilBERT's 80 / 10 / 10).
REPLACEMENT_SHARES = (0.8, 0.1, 0.1)


def token_counts(input_ids: Iterable[list[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in a tokenized corpus (`(vocab_size,)`, int64)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids in input_ids:
        counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    return counts


def masking_weights(counts: np.ndarray, smoothing: float, special_ids: Iterable[int]) -> torch.Tensor:
    """`max(count, 1) ** -smoothing` per token id, 0 for special tokens (never masked)."""
    if smoothing < 0:
        raise ValueError(f"mlm_smoothing must be >= 0, got {smoothing}")
    weights = np.maximum(counts, 1).astype(np.float64) ** -smoothing
    weights[list(special_ids)] = 0.0
    return torch.tensor(weights, dtype=torch.float32)


class SmoothedMaskingCollator:
    """Pads a list of tokenized rows and masks them as DistilBERT's code does; labels are -100 except at the chosen
    positions, which hold the original token.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): pads, and gives the `[MASK]` id and the special tokens.
        weights (`torch.Tensor` of shape `(vocab_size,)`): [`masking_weights`] of the training corpus.
        mlm_probability (`float`, *optional*, defaults to 0.15): share of a batch's real tokens chosen.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, weights: torch.Tensor, mlm_probability: float = 0.15):
        if tokenizer.mask_token_id is None:
            raise ValueError("Masked-LM distillation needs a tokenizer with a mask token")
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        self.pad = DataCollatorWithPadding(tokenizer)
        self.mask_id = tokenizer.mask_token_id
        self.weights = weights
        self.mlm_probability = mlm_probability

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.pad([{k: v for k, v in row.items() if k != "labels"} for row in rows])
        input_ids = batch["input_ids"]
        weights = self.weights[input_ids.flatten()] * batch["attention_mask"].flatten()
        real = int((weights > 0).sum())
        chosen = torch.zeros(input_ids.numel(), dtype=torch.bool)
        if real:
            count = min(real, math.ceil(self.mlm_probability * int(batch["attention_mask"].sum())))
            chosen[torch.multinomial(weights, count, replacement=False)] = True
        chosen = chosen.view_as(input_ids)
        labels = input_ids.masked_fill(~chosen, -100)
        how = torch.multinomial(torch.tensor(REPLACEMENT_SHARES), input_ids.numel(), replacement=True).view_as(chosen)
        random_ids = torch.randint(len(self.weights), input_ids.shape)
        masked = torch.where(chosen & (how == 0), self.mask_id, input_ids)
        batch["input_ids"] = torch.where(chosen & (how == 2), random_ids, masked)
        batch["labels"] = labels
        return batch
