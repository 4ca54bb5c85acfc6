"""DynaBERT (Hou et al. 2020, arXiv 2004.04037): importance, rewiring, an elastic BERT of adjustable width and depth,
and export of any of its sub-networks as a physically smaller checkpoint.

- [`compute_importance`]: attention heads by the gradient of the loss w.r.t. a gate on each head's output (BERT in
  transformers 5 has no `head_mask`); FFN neurons by `|sum_rows w * dL/dw + b * dL/db| + |sum_cols w * dL/dw|` over
  the neuron's row of the intermediate dense (with its bias) and column of the output dense. Both are summed over
  batches of absolute per-batch values, as DynaBERT's code does.
- [`rewire`]: permutes heads and neurons of every layer so that the most important come first; the network computes
  the same function.
- [`make_elastic`] / [`elastic_setting`]: a width multiplier keeps the first `round(m * heads)` heads and
  `round(m * intermediate_size)` neurons of every layer (weight slices, no copy); a depth multiplier keeps
  `round(m * L)` layers, layer `floor(i / m)` for `i = 0 .. round(m * L) - 1` (DynaBERT's rule: 12 layers at 0.5 keep
  0, 2, ..., 10), and the others are skipped.
- [`export_subnetwork`]: a setting becomes a stock `BertForSequenceClassification` (all heads kept) or a
  [`PrunedBertForSequenceClassification`] (fewer heads) with the same outputs.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedModel,
)
from transformers.models.bert.modeling_bert import BertLayer

from .benchmark import count_parameters
from .pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification, PrunedBertModel

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_DEPTHS = (0.5, 0.75, 1.0)

AutoConfig.register(PrunedBertConfig.model_type, PrunedBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification, exist_ok=True)
PrunedBertConfig.register_for_auto_class()
PrunedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


def _bert(model: PreTrainedModel) -> BertModel:
    base = model.base_model
    if not isinstance(base, BertModel):
        raise ValueError(f"DynaBERT needs a BERT model (BertModel encoder), got {type(base).__name__}")
    return base


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def check_multiplier(value: float, what: str) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"{what} multipliers must be in (0, 1], got {value}")
    return value


def kept_layers(num_layers: int, depth_mult: float) -> list[int]:
    """Layers (0-based) a depth multiplier keeps: `floor(i / m)` for `i < round(m * L)` (6 layers at 0.5: 0, 2, 4)."""
    check_multiplier(depth_mult, "Depth")
    depth = max(1, _round(num_layers * depth_mult))
    return [min(num_layers - 1, math.floor(i / depth_mult + 1e-9)) for i in range(depth)]


def kept_width(total: int, width_mult: float) -> int:
    """Heads or neurons a width multiplier keeps (at least one)."""
    check_multiplier(width_mult, "Width")
    return max(1, _round(total * width_mult))


# ---- importance and rewiring --------------------------------------------------------------------------------------


@dataclass
class Importance:
    """`heads[l, h]` and `neurons[l, j]`: importance of head `h` and FFN neuron `j` of layer `l`."""

    heads: torch.Tensor
    neurons: torch.Tensor


def _head_size(bert: BertModel) -> int:
    return bert.encoder.layer[0].attention.self.attention_head_size


def compute_importance(
    model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]], progress: bool = True
) -> Importance:
    """Head and neuron importance of a `*ForSequenceClassification` BERT from the task loss on `batches` (each a
    dict of model inputs with `labels`). Dropout is off; the model's weights, gradients and mode are left as found."""
    bert = _bert(model)
    layers = bert.encoder.layer
    heads, head_size = bert.config.num_attention_heads, _head_size(bert)
    device = next(model.parameters()).device
    gates = torch.ones(len(layers), heads, device=device, requires_grad=True)

    def gate(index):
        def hook(module, args):
            context = args[0]
            shaped = (
                context.view(*context.shape[:-1], -1, head_size) * gates[index, : context.shape[-1] // head_size, None]
            )
            return (shaped.view(context.shape), *args[1:])

        return hook

    hooks = [layer.attention.output.dense.register_forward_pre_hook(gate(i)) for i, layer in enumerate(layers)]
    ffn = [(layer.intermediate.dense, layer.output.dense) for layer in layers]
    head_importance = torch.zeros(len(layers), heads, device=device)
    neuron_importance = torch.zeros(len(layers), bert.config.intermediate_size, device=device)
    was_training = model.training
    requires_grad = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for module in (m for pair in ffn for m in pair):
            module.weight.requires_grad_(True)
            module.bias.requires_grad_(True)
        for batch in tqdm(batches, desc="Importance", disable=not progress):
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            head_importance += gates.grad.abs()
            gates.grad = None
            for index, (inner, outer) in enumerate(ffn):
                rows = (inner.weight * inner.weight.grad).sum(dim=1) + inner.bias * inner.bias.grad
                columns = (outer.weight * outer.weight.grad).sum(dim=0)
                neuron_importance[index] += rows.abs().detach() + columns.abs().detach()
            model.zero_grad(set_to_none=True)
    finally:
        for hook in hooks:
            hook.remove()
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return Importance(head_importance, neuron_importance)


@torch.no_grad()
def rewire(model: PreTrainedModel, importance: Importance) -> None:
    """Reorder every layer's heads (Q/K/V row blocks, attention-output columns) and FFN neurons (intermediate rows
    and bias, output columns) by decreasing importance, in place. The outputs do not change."""
    bert = _bert(model)
    head_size = _head_size(bert)
    for index, layer in enumerate(bert.encoder.layer):
        head_order = importance.heads[index].argsort(descending=True, stable=True).cpu()
        rows = (head_order[:, None] * head_size + torch.arange(head_size)).reshape(-1)
        attention = layer.attention.self
        for linear in (attention.query, attention.key, attention.value):
            linear.weight.copy_(linear.weight[rows])
            linear.bias.copy_(linear.bias[rows])
        dense = layer.attention.output.dense
        dense.weight.copy_(dense.weight[:, rows])
        neuron_order = importance.neurons[index].argsort(descending=True, stable=True).cpu()
        inner, outer = layer.intermediate.dense, layer.output.dense
        inner.weight.copy_(inner.weight[neuron_order])
        inner.bias.copy_(inner.bias[neuron_order])
        outer.weight.copy_(outer.weight[:, neuron_order])
    model.config.dynabert_rewired = True


# ---- the elastic model --------------------------------------------------------------------------------------------


class ElasticLinear(nn.Linear):
    """`nn.Linear` that uses only its first `active_out` rows and `active_in` columns (None: all)."""

    active_out: int | None = None
    active_in: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if self.active_out is not None:
            weight = weight[: self.active_out]
            bias = bias[: self.active_out] if bias is not None else None
        if self.active_in is not None:
            weight = weight[:, : self.active_in]
        return F.linear(x, weight, bias)


class ElasticBertLayer(BertLayer):
    """`BertLayer` that returns its input unchanged while `skipped`."""

    skipped: bool = False

    def forward(self, hidden_states, *args, **kwargs):
        if self.skipped:
            return hidden_states
        return super().forward(hidden_states, *args, **kwargs)


def make_elastic(model: PreTrainedModel) -> PreTrainedModel:
    """Turn a BERT into an elastic one in place (its weights, state dict and outputs at full size are unchanged):
    the linear layers that width slices and the layers that depth skips change class. Idempotent."""
    bert = _bert(model)
    for layer in bert.encoder.layer:
        if type(layer) is BertLayer:
            layer.__class__ = ElasticBertLayer
        attention = layer.attention
        for linear in (attention.self.query, attention.self.key, attention.self.value, attention.output.dense,
                       layer.intermediate.dense, layer.output.dense):  # fmt: skip
            if type(linear) is nn.Linear:
                linear.__class__ = ElasticLinear
    model._elastic_setting = (1.0, 1.0)
    return model


def set_elastic_setting(model: PreTrainedModel, width_mult: float = 1.0, depth_mult: float = 1.0) -> None:
    """Select the sub-network of [`make_elastic`] `model`: the most important heads/neurons and DynaBERT's layers."""
    bert = _bert(model)
    if not hasattr(model, "_elastic_setting"):
        raise ValueError("Call bertdistill.elastic.make_elastic(model) first")
    config = bert.config
    head_size = _head_size(bert)
    heads = kept_width(config.num_attention_heads, width_mult)
    neurons = kept_width(config.intermediate_size, width_mult)
    keep = set(kept_layers(config.num_hidden_layers, depth_mult))
    full_width = width_mult == 1.0
    for index, layer in enumerate(bert.encoder.layer):
        layer.skipped = index not in keep
        attention = layer.attention
        for linear in (attention.self.query, attention.self.key, attention.self.value):
            linear.active_out = None if full_width else heads * head_size
        attention.output.dense.active_in = None if full_width else heads * head_size
        layer.intermediate.dense.active_out = None if full_width else neurons
        layer.output.dense.active_in = None if full_width else neurons
    model._elastic_setting = (width_mult, depth_mult)


def get_elastic_setting(model: PreTrainedModel) -> tuple[float, float]:
    return getattr(model, "_elastic_setting", (1.0, 1.0))


@contextlib.contextmanager
def elastic_setting(model: PreTrainedModel, width_mult: float, depth_mult: float) -> Iterator[PreTrainedModel]:
    """Run `model` at a (width, depth) setting inside the block; the previous setting comes back after it."""
    previous = get_elastic_setting(model)
    set_elastic_setting(model, width_mult, depth_mult)
    try:
        yield model
    finally:
        set_elastic_setting(model, *previous)


def student_hidden_states(hidden_states: tuple[torch.Tensor, ...], kept: list[int]) -> list[torch.Tensor]:
    """The hidden states a sub-network really produces (embeddings, then each kept layer's output), picked out of the
    full-length tuple an elastic model returns (skipped layers repeat their input)."""
    return [hidden_states[0], *(hidden_states[index + 1] for index in kept)]


def teacher_hidden_states(hidden_states: tuple[torch.Tensor, ...], kept: list[int]) -> list[torch.Tensor]:
    """The full model's hidden states a sub-network's are matched with: the embeddings, and for the output of kept
    layer `kept[j]` the full model's output just before the next kept layer (the last: the full model's output)."""
    boundaries = [*kept[1:], len(hidden_states) - 1]
    return [hidden_states[0], *(hidden_states[index] for index in boundaries)]


# ---- export -------------------------------------------------------------------------------------------------------


def count_setting_parameters(model: PreTrainedModel, width_mult: float, depth_mult: float) -> int:
    """Parameters of the sub-network at a setting (what [`export_subnetwork`] would hold)."""
    config = _bert(model).config
    hidden, head_size = config.hidden_size, _head_size(_bert(model))
    attention_features = kept_width(config.num_attention_heads, width_mult) * head_size
    neurons = kept_width(config.intermediate_size, width_mult)
    per_layer = (
        3 * (hidden * attention_features + attention_features)
        + attention_features * hidden + hidden + 2 * hidden  # attention output dense + LayerNorm
        + hidden * neurons + neurons + neurons * hidden + hidden + 2 * hidden  # FFN + LayerNorm
    )  # fmt: skip
    encoder = count_parameters(_bert(model).encoder.layer)
    return count_parameters(model) - encoder + per_layer * len(kept_layers(config.num_hidden_layers, depth_mult))


@torch.no_grad()
def export_subnetwork(model: PreTrainedModel, width_mult: float, depth_mult: float) -> PreTrainedModel:
    """A physically smaller copy of the sub-network at (width, depth): a stock `BertForSequenceClassification` (or
    `BertModel`) when every head is kept, else [`PrunedBertForSequenceClassification`] (or `PrunedBertModel`), with
    the same outputs as the elastic model at that setting. `model` must be rewired (most important first), or the
    kept heads and neurons are simply the first ones."""
    bert = _bert(model)
    config = bert.config
    head_size = _head_size(bert)
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


def copy_full_model(model: PreTrainedModel) -> PreTrainedModel:
    """A frozen copy of `model` at full size (the next stage's teacher)."""
    teacher = copy.deepcopy(model)
    if hasattr(teacher, "_elastic_setting"):
        set_elastic_setting(teacher, 1.0, 1.0)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.eval()


def choose_setting(rows: list[dict], metric: str, max_parameters: int | None = None,
                   max_latency_ms: float | None = None, latency_key: str = "latency_b1_ms") -> dict:  # fmt: skip
    """The grid row with the best `metric` among those within the budgets (parameters and/or latency).

    Args:
        rows (`list[dict]`): grid rows with `metric`, `"parameters"` and `latency_key`.
        metric (`str`): key of the metric to maximise.
        max_parameters (`int`, *optional*), max_latency_ms (`float`, *optional*): the budgets.
        latency_key (`str`, *optional*): which latency the budget is about (`"latency_b1_ms"` or `"latency_b32_ms"`).
    """
    fits = [
        row for row in rows
        if (max_parameters is None or row["parameters"] <= max_parameters)
        and (max_latency_ms is None or row[latency_key] <= max_latency_ms)
    ]  # fmt: skip
    if not fits:
        smallest = min(rows, key=lambda r: r["parameters"])
        raise ValueError(
            f"No setting fits the budget (parameters <= {max_parameters}, {latency_key} <= {max_latency_ms}); the "
            f"smallest is width {smallest['width_mult']}, depth {smallest['depth_mult']} with "
            f"{smallest['parameters']} parameters and {smallest[latency_key]:.1f} ms"
        )
    return max(fits, key=lambda r: (r[metric], -r["parameters"]))
