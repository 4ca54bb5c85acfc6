"""A sub-network of an elastic BERT as a physically smaller checkpoint: a stock `BertForSequenceClassification` when
every head is kept, else a [`PrunedBertForSequenceClassification`] (fewer heads), with the same outputs."""

from __future__ import annotations

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedModel,
)

from ..benchmark import count_parameters
from .bert_layout import attention_head_size, bert_encoder
from .elastic import kept_layers, kept_width
from .pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification, PrunedBertModel

# An export loads through the Auto classes with bertdistill imported, and through the pruned_bert.py that
# save_pretrained copies next to it (the auto_map) without it.
AutoConfig.register(PrunedBertConfig.model_type, PrunedBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification, exist_ok=True)
PrunedBertConfig.register_for_auto_class()
PrunedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


def count_setting_parameters(model: PreTrainedModel, width_mult: float, depth_mult: float) -> int:
    """Parameters of the sub-network at a setting (what [`export_subnetwork`] would hold)."""
    bert = bert_encoder(model)
    config = bert.config
    hidden, head_size = config.hidden_size, attention_head_size(bert)
    attention_features = kept_width(config.num_attention_heads, width_mult) * head_size
    neurons = kept_width(config.intermediate_size, width_mult)
    per_layer = (
        3 * (hidden * attention_features + attention_features)
        + attention_features * hidden + hidden + 2 * hidden  # attention output dense + LayerNorm
        + hidden * neurons + neurons + neurons * hidden + hidden + 2 * hidden  # FFN + LayerNorm
    )  # fmt: skip
    encoder = count_parameters(bert.encoder.layer)
    return count_parameters(model) - encoder + per_layer * len(kept_layers(config.num_hidden_layers, depth_mult))


@torch.no_grad()
def export_subnetwork(model: PreTrainedModel, width_mult: float, depth_mult: float) -> PreTrainedModel:
    """A physically smaller copy of the sub-network at (width, depth): a stock `BertForSequenceClassification` (or
    `BertModel`) when every head is kept, else [`PrunedBertForSequenceClassification`] (or `PrunedBertModel`), with
    the same outputs as the elastic model at that setting. `model` must be rewired (most important first), or the
    kept heads and neurons are simply the first ones."""
    bert = bert_encoder(model)
    config = bert.config
    head_size = attention_head_size(bert)
    heads = kept_width(config.num_attention_heads, width_mult)
    neurons = kept_width(config.intermediate_size, width_mult)
    layers = kept_layers(config.num_hidden_layers, depth_mult)
    values = config.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map", "attention_head_size"):
        values.pop(key, None)
    values.update(num_hidden_layers=len(layers), intermediate_size=neurons, num_attention_heads=heads)
    if heads * head_size == config.hidden_size:
        new_config = BertConfig(**values)
        classes = (BertForSequenceClassification, BertModel)
    else:
        new_config = PrunedBertConfig(attention_head_size=head_size, **values)
        classes = (PrunedBertForSequenceClassification, PrunedBertModel)
    new_config.dynabert_setting = {"width_mult": width_mult, "depth_mult": depth_mult, "teacher_layers": layers}
    new_config.dynabert_rewired = getattr(config, "dynabert_rewired", False)
    exported = (classes[0] if isinstance(model, BertForSequenceClassification) else classes[1])(new_config)

    features = heads * head_size
    state = {}
    for key, value in model.state_dict().items():
        if ".encoder.layer." not in key and not key.startswith("encoder.layer."):
            state[key] = value
            continue
        prefix, rest = key.split("encoder.layer.", 1)
        index, name = rest.split(".", 1)
        if int(index) not in layers:
            continue
        if any(name.startswith(f"attention.self.{p}.") for p in ("query", "key", "value")):
            value = value[:features]
        elif name == "attention.output.dense.weight":
            value = value[:, :features]
        elif name.startswith("intermediate.dense."):
            value = value[:neurons]
        elif name == "output.dense.weight":
            value = value[:, :neurons]
        state[f"{prefix}encoder.layer.{layers.index(int(index))}.{name}"] = value.clone()
    exported.load_state_dict(state, strict=True)
    exported.config._attn_implementation = model.config._attn_implementation
    return exported.eval()
