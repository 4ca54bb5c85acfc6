"""BERT with fewer attention heads than `hidden_size / head_size`, or a different number of heads and FFN neurons in
every layer: the checkpoint format of a width-pruned DynaBERT sub-network and of a structurally pruned BERT.

A stock `BertConfig` derives the head size from `hidden_size / num_attention_heads`, so a BERT whose layers keep 6
of 12 heads of size 64 (hidden 768) cannot be described by it. `PrunedBertConfig` adds `attention_head_size`, and the
model classes below build every self-attention with `num_attention_heads * attention_head_size` features. The rest is
stock BERT (the same forward, attention implementations, `from_pretrained`/`save_pretrained`).

This file imports only torch and transformers: `save_pretrained` copies it next to the weights (through
`register_for_auto_class`), so `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`
loads a pruned checkpoint on a machine without bertdistill. With bertdistill imported, the classes are registered
with the Auto classes and `trust_remote_code` is not needed.
"""

from __future__ import annotations

import contextlib

from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel


class PrunedBertConfig(BertConfig):
    r"""`BertConfig` plus `attention_head_size`, which may differ from `hidden_size / num_attention_heads`.

    Args:
        attention_head_size (`int`, *optional*): size of each attention head (default
            `hidden_size // num_attention_heads`, a stock BERT).
        heads_per_layer (`list[int]`, *optional*): each layer's number of heads (default: `num_attention_heads`).
        intermediate_sizes (`list[int]`, *optional*): each layer's FFN size (default: `intermediate_size`).
        **kwargs: everything `BertConfig` takes.
    """

    model_type = "bertdistill_pruned_bert"

    def __init__(
        self,
        attention_head_size: int | None = None,
        heads_per_layer: list[int] | None = None,
        intermediate_sizes: list[int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.attention_head_size = attention_head_size or self.hidden_size // self.num_attention_heads
        for name, value in (("heads_per_layer", heads_per_layer), ("intermediate_sizes", intermediate_sizes)):
            if value is not None and len(value) != self.num_hidden_layers:
                raise ValueError(f"{name} needs one value per layer ({self.num_hidden_layers}), got {len(value)}")
        self.heads_per_layer = heads_per_layer
        self.intermediate_sizes = intermediate_sizes


@contextlib.contextmanager
def _built_as_one_head(config: PrunedBertConfig):
    # BertSelfAttention insists that the heads divide the hidden size: build with one head, then resize.
    heads = config.num_attention_heads
    config.num_attention_heads = 1
    try:
        yield
    finally:
        config.num_attention_heads = heads


def _resize_attention(bert: BertModel, config: PrunedBertConfig) -> None:
    """Every layer's attention at its own head count and its FFN at its own size (`heads_per_layer`,
    `intermediate_sizes`; by default the config's `num_attention_heads` / `intermediate_size` for all)."""
    size = config.attention_head_size
    for index, layer in enumerate(bert.encoder.layer):
        heads = config.heads_per_layer[index] if config.heads_per_layer else config.num_attention_heads
        attention = layer.attention.self
        attention.num_attention_heads = heads
        attention.attention_head_size = size
        attention.all_head_size = heads * size
        attention.scaling = size**-0.5
        for name in ("query", "key", "value"):
            setattr(attention, name, nn.Linear(config.hidden_size, heads * size))
        layer.attention.output.dense = nn.Linear(heads * size, config.hidden_size)
        if config.intermediate_sizes:
            neurons = config.intermediate_sizes[index]
            layer.intermediate.dense = nn.Linear(config.hidden_size, neurons)
            layer.output.dense = nn.Linear(neurons, config.hidden_size)


class PrunedBertModel(BertModel):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig, add_pooling_layer: bool = True):
        with _built_as_one_head(config):
            super().__init__(config, add_pooling_layer=add_pooling_layer)
        _resize_attention(self, config)
        self.post_init()


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig):
        with _built_as_one_head(config):
            super().__init__(config)
        _resize_attention(self.bert, config)
        self.post_init()
