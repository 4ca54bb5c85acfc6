"""Token-level distortions of a batch, for DDGSD's two views of every input (Xu and Liu, AAAI 2019): the image
distortions of the paper (crops, flips, colour changes) carried over to text as changes of a few tokens.

Each real token (not padding, not a special token such as [CLS] or [SEP]) is chosen with probability `rate`; a chosen
token is
- `"mask"`: replaced by the tokenizer's mask token,
- `"drop"`: deleted (the row's later tokens move left and padding fills its end: for right-padded batches, as BERT
  tokenizers pad),
- `"substitute"`: replaced by a token drawn uniformly from the vocabulary's non-special tokens,
- `"mixed"`: one of the three, uniformly.
"""

from __future__ import annotations

import torch

DISTORTIONS = ("mask", "drop", "substitute", "mixed")


def distort(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    special_ids: list[int],
    vocab_size: int,
    mode: str,
    rate: float,
    mask_token_id: int | None = None,
    pad_token_id: int = 0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One distorted copy of a padded batch (shapes unchanged: `(B, L)`), as model inputs.

    Args:
        input_ids, attention_mask, token_type_ids (`torch.Tensor` of shape `(B, L)`): the batch.
        special_ids (`list[int]`): token ids never distorted nor drawn (the tokenizer's `all_special_ids`).
        vocab_size (`int`): draws for `"substitute"` come from `[0, vocab_size)` minus `special_ids`.
        mode (`str`): one of `DISTORTIONS`.
        rate (`float`): probability that a real token is chosen, in [0, 1).
        mask_token_id (`int`, *optional*): needed by `"mask"` and `"mixed"`.
        generator (`torch.Generator`, *optional*): the random draws (default: torch's global generator).
    """
    if mode not in DISTORTIONS:
        raise ValueError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {mode!r}")
    if not 0 <= rate < 1:
        raise ValueError(f"distortion rate must be in [0, 1), got {rate}")
    if mode in ("mask", "mixed") and mask_token_id is None:
        raise ValueError(f"distortion {mode!r} needs the tokenizer's mask token; this tokenizer has none")
    device = input_ids.device
    special = torch.isin(input_ids, torch.tensor(special_ids, device=device, dtype=input_ids.dtype))
    real = attention_mask.bool() & ~special
    chosen = real & (torch.rand(input_ids.shape, generator=generator, device=device) < rate)
    kind = torch.randint(0, 3, input_ids.shape, generator=generator, device=device) if mode == "mixed" else None

    def picked(name: str) -> torch.Tensor:
        if mode == "mixed":
            return chosen & (kind == ("mask", "drop", "substitute").index(name))
        return chosen if mode == name else torch.zeros_like(chosen)

    ids = input_ids.clone()
    ids[picked("mask")] = mask_token_id if mask_token_id is not None else 0
    substitute = picked("substitute")
    if substitute.any():
        allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
        allowed[[i for i in special_ids if i < vocab_size]] = False
        pool = allowed.nonzero().squeeze(-1)
        draws = torch.randint(0, len(pool), (int(substitute.sum()),), generator=generator, device=device)
        ids[substitute] = pool[draws]
    types = token_type_ids.clone() if token_type_ids is not None else None
    mask = attention_mask.clone()
    drop = picked("drop")
    if drop.any():
        # Stable sort moves the kept positions to the front in their order; the dropped ones become padding.
        keep = ~drop
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
        ids = torch.gather(ids, 1, order)
        mask = torch.gather(mask * keep, 1, order)
        if types is not None:
            types = torch.gather(types, 1, order)
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id))
        if types is not None:
            types = torch.where(mask.bool(), types, torch.zeros_like(types))
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out
