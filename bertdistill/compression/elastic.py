"""DynaBERT's elastic BERT (Hou et al. 2020, arXiv 2004.04037): one set of weights run at any (width, depth).

A width multiplier keeps the first `round(m * heads)` heads and `round(m * intermediate_size)` neurons of every layer
(weight slices, no copy; [`rewire`] puts the most important first); a depth multiplier keeps `round(m * L)` layers,
layer `floor(i / m)` for `i = 0 .. round(m * L) - 1` (DynaBERT's rule: 12 layers at 0.5 keep 0, 2, ..., 10), and the
others are skipped. [`make_elastic`] changes the classes of the modules that slice or skip; [`set_elastic_setting`]
and the [`elastic_setting`] context select a sub-network.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.models.bert.modeling_bert import BertLayer

from .bert_layout import attention_head_size, bert_encoder

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_DEPTHS = (0.5, 0.75, 1.0)


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def check_multiplier(value: float, what: str) -> float:
    """`value` when it is a valid multiplier (in (0, 1]); else a `ValueError` naming `what` ("Width" or "Depth")."""
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
    bert = bert_encoder(model)
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
    bert = bert_encoder(model)
    if not hasattr(model, "_elastic_setting"):
        raise ValueError("Call bertdistill.make_elastic(model) first")
    config = bert.config
    head_size = attention_head_size(bert)
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


def copy_full_model(model: PreTrainedModel) -> PreTrainedModel:
    """A frozen copy of `model` at full size (the next stage's teacher)."""
    teacher = copy.deepcopy(model)
    if hasattr(teacher, "_elastic_setting"):
        set_elastic_setting(teacher, 1.0, 1.0)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.eval()
