"""Feed-forward pre-activations (the input of each layer's GELU) read with forward hooks, for losses on neurons'
activation boundaries (AB, `bertdistill.losses.hidden_learned.ab_loss`).

transformers returns hidden states and attentions but not the FFN's inner activations; a forward hook on the layer's
`intermediate.dense` (or the family's equivalent, `bertdistill.families`) sees its output, which is exactly the
pre-activation. Layers are numbered 1..N as attentions
are (see `bertdistill.layer_maps`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

from .families import ffn_input_modules


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
