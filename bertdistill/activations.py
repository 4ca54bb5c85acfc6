"""Feed-forward pre-activations (the input of each layer's GELU) read with forward hooks, for losses on neurons'
activation boundaries (AB, `bertdistill.losses.hidden_learned.ab_loss`).

transformers returns hidden states and attentions but not the FFN's inner activations; a forward hook on the layer's
`intermediate.dense` sees its output, which is exactly the pre-activation. Layers are numbered 1..N as attentions
are (see `bertdistill.layer_maps`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel


def ffn_input_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The linear layer in front of each transformer layer's FFN activation (`encoder.layer[i].intermediate.dense`
    in BERT, RoBERTa, ELECTRA and their relatives).

    Raises:
        `ValueError`: when the model's layers are not laid out that way.
    """
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not all(
        isinstance(getattr(getattr(layer, "intermediate", None), "dense", None), nn.Linear) for layer in layers
    ):
        raise ValueError(
            f"FFN pre-activations are read from BERT-style layers (encoder.layer[i].intermediate.dense); "
            f"{type(base).__name__} has none. Drop the ffn matches (loss 'ab') for this model"
        )
    return [layer.intermediate.dense for layer in layers]


@contextmanager
def recording_ffn_inputs(model: PreTrainedModel, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, forwards of `model` fill the yielded dict with `{layer: (B, L, I) pre-activations}` for
    `layers` (1-based); the hooks are removed on exit."""
    recorded: dict[int, torch.Tensor] = {}
    modules = ffn_input_modules(model) if layers else []
    handles = []
    for layer in layers:
        if not 1 <= layer <= len(modules):
            raise ValueError(f"FFN layer {layer} is out of range: the model has {len(modules)} layers (1-based)")

        def hook(module, inputs, output, layer=layer):
            recorded[layer] = output

        handles.append(modules[layer - 1].register_forward_hook(hook))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()
