"""DynaBERT's importance of attention heads and FFN neurons (Hou et al. 2020, arXiv 2004.04037), and the rewiring
that puts the most important first.

- [`compute_importance`]: attention heads by the gradient of the loss w.r.t. a gate on each head's output (BERT in
  transformers 5 has no `head_mask`); FFN neurons by `|sum_rows w * dL/dw + b * dL/db| + |sum_cols w * dL/dw|` over
  the neuron's row of the intermediate dense (with its bias) and column of the output dense. By default
  (`gradients="per_batch"`) each batch's gradients stand alone and their absolute values are summed over batches.
  DynaBERT's code never zeroes the gradients between batches, so what it sums is the absolute value of the gradient
  accumulated up to each batch: `gradients="cumulative"` does that (early batches then weigh more, and the ranking
  can differ).
- [`rewire`]: permutes heads and neurons of every layer so that the most important come first; the network computes
  the same function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .bert_layout import attention_head_size, bert_encoder


@dataclass
class Importance:
    """`heads[l][h]` and `neurons[l][j]`: importance of head `h` and FFN neuron `j` of layer `l`; `(layers, n)`
    tensors, or lists of one 1-D tensor per layer when the layers differ in size (a structurally pruned BERT)."""

    heads: torch.Tensor | list[torch.Tensor]
    neurons: torch.Tensor | list[torch.Tensor]


GRADIENTS = ("per_batch", "cumulative")


def compute_importance(
    model: PreTrainedModel,
    batches: Iterable[dict[str, torch.Tensor]],
    progress: bool = True,
    gradients: str = "per_batch",
) -> Importance:
    """Head and neuron importance of a `*ForSequenceClassification` BERT from the task loss on `batches` (each a
    dict of model inputs with `labels`). Dropout is off; the model's weights, gradients and mode are left as found.

    Args:
        gradients (`str`, *optional*, defaults to `"per_batch"`): `"per_batch"` (each batch's own gradients) or
            `"cumulative"` (the gradients accumulated over the batches so far, as DynaBERT's code computes them).
    """
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients must be one of {GRADIENTS}, got {gradients!r}")
    bert = bert_encoder(model)
    layers = bert.encoder.layer
    heads, head_size = bert.config.num_attention_heads, attention_head_size(bert)
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
    # A structurally pruned BERT has its own head and neuron counts in every layer.
    head_counts = [layer.attention.self.num_attention_heads for layer in layers]
    head_importance = torch.zeros(len(layers), max(head_counts), device=device)
    neuron_importance = [torch.zeros(inner.out_features, device=device) for inner, _ in ffn]
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
            for index, (inner, outer) in enumerate(ffn):
                rows = (inner.weight * inner.weight.grad).sum(dim=1) + inner.bias * inner.bias.grad
                columns = (outer.weight * outer.weight.grad).sum(dim=0)
                neuron_importance[index] += rows.abs().detach() + columns.abs().detach()
            if gradients == "per_batch":
                gates.grad = None
                model.zero_grad(set_to_none=True)
    finally:
        for hook in hooks:
            hook.remove()
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    head_rows = [head_importance[i, :count] for i, count in enumerate(head_counts)]
    if len(set(head_counts)) == 1 and len({n.numel() for n in neuron_importance}) == 1:
        return Importance(head_importance, torch.stack(neuron_importance))
    return Importance(head_rows, neuron_importance)


@torch.no_grad()
def rewire(model: PreTrainedModel, importance: Importance) -> None:
    """Reorder every layer's heads (Q/K/V row blocks, attention-output columns) and FFN neurons (intermediate rows
    and bias, output columns) by decreasing importance, in place. The outputs do not change."""
    bert = bert_encoder(model)
    head_size = attention_head_size(bert)
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
