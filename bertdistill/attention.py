"""Pre-softmax attention scores, as TinyBERT distils them, from transformers 5 models that keep the SDPA path.

transformers 5 returns attention *probabilities*, and only under eager attention. TinyBERT's attention loss is on the
scores `Q K^T / sqrt(d)` before the softmax, with masked positions set to zero. This module registers an attention
implementation, `"bertdistill_scores"`, through transformers' `AttentionInterface`: in layers marked for recording it
computes the scores in fp32, returns the usual attention output and hands the scores back where attention weights
go (`outputs.attentions`); every other layer runs `torch`'s scaled-dot-product attention as `sdpa` would. Its masks
come from the `sdpa` mask builder, registered under the same name (an attention function registered without one
receives no padding mask at all).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from .families import attention_modules

ATTENTION_SCORES = "bertdistill_scores"
_RECORD = "_bertdistill_record_scores"


def scores_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention with the same output as SDPA; in recording layers also the masked pre-softmax scores.

    Shapes: `query`, `key`, `value` `(B, heads, L, d)`; `attention_mask` `None` or boolean `(B, 1, L, L)` (True =
    attend). Returns the output `(B, L, heads, d)` and the scores `(B, heads, L, L)` (fp32, zero where masked) or
    `None` in layers that do not record.
    """
    if not getattr(module, _RECORD, False):
        kwargs.pop("output_attentions", None)  # only recording layers return weights; sdpa would warn about it
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    # fp32 even under mixed precision (autocast would run this matmul in bf16/fp16 whatever its inputs).
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(2, 3)) * scaling
    logits = scores
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            allowed = attention_mask
        else:
            allowed = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        logits = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        scores = scores.masked_fill(~allowed, 0.0)
    probs = torch.softmax(logits, dim=-1).to(value.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, scores


AttentionInterface.register(ATTENTION_SCORES, scores_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_SCORES, sdpa_mask)


def self_attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The self-attention module of every encoder layer, in order (from `bertdistill.families`; a family whose
    attention does not go through transformers' attention interface is refused with the reason)."""
    return attention_modules(model)


def record_attention_scores(model: PreTrainedModel, layers: list[int] | None = None) -> None:
    """Switch `model` to `"bertdistill_scores"` attention and record scores in `layers` (1-based; default: all).

    Afterwards `model(..., output_attentions=True).attentions` holds the masked pre-softmax scores of the recorded
    layers only, in layer order, and every other output is unchanged.
    """
    modules = self_attention_modules(model)
    chosen = set(range(1, len(modules) + 1) if layers is None else layers)
    bad = sorted(chosen - set(range(1, len(modules) + 1)))
    if bad:
        raise ValueError(f"Attention layers {bad} out of range: the model has layers 1..{len(modules)}")
    model.set_attn_implementation(ATTENTION_SCORES)
    for index, module in enumerate(modules, start=1):
        setattr(module, _RECORD, index in chosen)


def stop_recording_attention_scores(model: PreTrainedModel) -> None:
    """Undo [`record_attention_scores`]: plain SDPA again (no-op for a model that never recorded)."""
    if model.config._attn_implementation != ATTENTION_SCORES:
        return
    model.set_attn_implementation("sdpa")
    for module in self_attention_modules(model):
        setattr(module, _RECORD, False)
