"""Structured pruning of any BERT sequence classifier: attention heads and FFN neurons ranked by importance, cut to a
target, exported physically smaller.

- [`plan_pruning`]: which heads and neurons every layer keeps, from an [`Importance`] (DynaBERT's head-gate gradient
  and `|w * dL/dw|` neuron scores, `compute_importance`) and a target: the parameters of the pruned model, the
  fraction of the prunable parameters to remove, or per-layer counts. For a global target, each layer's head scores
  are divided by their L2 norm, and so are its neuron scores (Michel et al. 2019 normalise head importance per layer:
  raw gradient scores grow with depth), and the same fraction of the heads and of the neurons is removed, the lowest
  normalised scores first across all layers, so layers lose more or fewer units by their scores. The fraction is the
  smallest one whose model meets the target.
- [`apply_plan`]: a smaller copy computing what the original computes with the pruned heads' context and the pruned
  neurons' activations set to zero. A stock `BertForSequenceClassification` when every layer keeps every head and all
  layers the same neuron count; else a [`PrunedBertForSequenceClassification`] with per-layer sizes, which loads
  through the Auto classes (its code ships next to the weights).

Recovery: distil the pruned model from the unpruned one (`scripts/compress.py --stages prune` does, optionally in
`--prune_steps` rounds of prune a little, distil, repeat).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import BertConfig, BertForSequenceClassification, PreTrainedModel

from ..benchmark import count_parameters
from .bert_layout import attention_head_size, bert_encoder
from .export import PrunedBertConfig, PrunedBertForSequenceClassification  # registers the pruned classes
from .importance import Importance


@dataclass
class StructuredPlan:
    """`heads[l]` and `neurons[l]`: the sorted indices of the heads and FFN neurons layer `l` keeps."""

    heads: list[list[int]]
    neurons: list[list[int]]

    def to_dict(self) -> dict:
        return {"heads": self.heads, "neurons": self.neurons}

    @classmethod
    def from_dict(cls, values: dict) -> StructuredPlan:
        return cls([list(h) for h in values["heads"]], [list(n) for n in values["neurons"]])


def _sizes(model: PreTrainedModel) -> tuple[list[int], list[int], int, int]:
    """Every layer's head and neuron counts, the head size and the hidden size."""
    bert = bert_encoder(model)
    layers = bert.encoder.layer
    return ([layer.attention.self.num_attention_heads for layer in layers],
            [layer.intermediate.dense.out_features for layer in layers], attention_head_size(bert),
            bert.config.hidden_size)  # fmt: skip


def _layer_parameters(hidden: int, head_size: int, heads: int, neurons: int) -> int:
    """Prunable parameters of one layer: Q, K, V and the attention output dense, the two FFN denses (with biases)."""
    features = heads * head_size
    return 4 * hidden * features + 3 * features + hidden + 2 * hidden * neurons + neurons + hidden


def prunable_parameters(model: PreTrainedModel) -> int:
    """Parameters of the encoder layers' attention and FFN denses: what pruning heads and neurons can remove."""
    bert = bert_encoder(model)
    return sum(
        count_parameters(module)
        for layer in bert.encoder.layer
        for module in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                       layer.attention.output.dense, layer.intermediate.dense, layer.output.dense)
    )  # fmt: skip


def count_plan_parameters(model: PreTrainedModel, plan: StructuredPlan) -> int:
    """Parameters of `apply_plan(model, plan)`, without building it."""
    _, _, head_size, hidden = _sizes(model)
    kept = sum(_layer_parameters(hidden, head_size, len(h), len(n)) for h, n in zip(plan.heads, plan.neurons))
    return count_parameters(model) - prunable_parameters(model) + kept


def _per_layer(value, available: list[int], what: str) -> list[int]:
    counts = [value] * len(available) if isinstance(value, int) else list(value)
    if len(counts) != len(available):
        raise ValueError(f"{what} needs one count per layer ({len(available)}), got {len(counts)}")
    for count, limit in zip(counts, available):
        if not 1 <= count <= limit:
            raise ValueError(f"{what} must be between 1 and {limit} per layer, got {count}")
    return counts


def _top(scores: torch.Tensor, count: int) -> list[int]:
    return sorted(scores.argsort(descending=True, stable=True)[:count].tolist())


def plan_pruning(
    model: PreTrainedModel,
    importance: Importance,
    *,
    target_params: int | None = None,
    target_sparsity: float | None = None,
    heads_per_layer: int | list[int] | None = None,
    neurons_per_layer: int | list[int] | None = None,
    min_heads: int = 1,
    min_neurons: int = 1,
) -> StructuredPlan:
    """Which heads and neurons every layer of `model` keeps (see the module docstring for the ranking).

    Args:
        importance (`Importance`): head and neuron scores of `model` (`compute_importance`).
        target_params (`int`, *optional*): parameters of the pruned model (embeddings and head included).
        target_sparsity (`float`, *optional*): fraction of [`prunable_parameters`] to remove, in [0, 1).
        heads_per_layer, neurons_per_layer (`int` or `list[int]`, *optional*): counts to keep (one for every layer,
            or one each); a count not given keeps every unit of that kind.
        min_heads, min_neurons (`int`, *optional*, defaults to 1): what a global target leaves in every layer.

    Raises:
        `ValueError`: for no target or several, a sparsity outside [0, 1), a parameter target above the model's
            count or below the smallest reachable one (named), per-layer counts of the wrong length or size.
    """
    heads, neurons, _, _ = _sizes(model)
    scores_h = [importance.heads[i].detach().float().cpu() for i in range(len(importance.heads))]
    scores_n = [importance.neurons[i].detach().float().cpu() for i in range(len(importance.neurons))]
    if [len(h) for h in scores_h] != heads or [len(n) for n in scores_n] != neurons:
        raise ValueError(
            f"importance has {[len(h) for h in scores_h]} heads / {[len(n) for n in scores_n]} neurons per layer, "
            f"the model {heads} / {neurons}"
        )
    counts = heads_per_layer is not None or neurons_per_layer is not None
    given = sum([target_params is not None, target_sparsity is not None, counts])
    if given != 1:
        raise ValueError("give exactly one target: target_params, target_sparsity, or heads/neurons_per_layer")
    if counts:
        keep_h = _per_layer(heads if heads_per_layer is None else heads_per_layer, heads, "heads_per_layer")
        keep_n = _per_layer(neurons if neurons_per_layer is None else neurons_per_layer, neurons, "neurons_per_layer")
        return StructuredPlan([_top(h, k) for h, k in zip(scores_h, keep_h)],
                              [_top(n, k) for n, k in zip(scores_n, keep_n)])  # fmt: skip
    if not 1 <= min_heads <= min(heads) or not 1 <= min_neurons <= min(neurons):
        raise ValueError(f"min_heads must be in [1, {min(heads)}] and min_neurons in [1, {min(neurons)}]")
    total = count_parameters(model)
    if target_sparsity is not None:
        if not 0 <= target_sparsity < 1:
            raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}")
        target_params = total - round(target_sparsity * prunable_parameters(model))
    if target_params > total:
        raise ValueError(f"target_params {target_params} is above the model's {total} parameters")

    def plan_at(fraction: float) -> StructuredPlan:
        return StructuredPlan(_global_cut(scores_h, fraction, min_heads), _global_cut(scores_n, fraction, min_neurons))

    smallest = plan_at(1.0)
    if count_plan_parameters(model, smallest) > target_params:
        reachable = count_plan_parameters(model, smallest)
        raise ValueError(
            f"target {target_params} parameters is below the smallest reachable, {reachable}"
            f" ({min_heads} head(s) and {min_neurons} neuron(s) in every layer); lower min_heads/min_neurons or "
            "remove layers by distillation first"
        )
    low, high = 0.0, 1.0  # the smallest fraction that meets the target (parameters fall as the fraction grows)
    for _ in range(40):
        middle = (low + high) / 2
        if count_plan_parameters(model, plan_at(middle)) <= target_params:
            high = middle
        else:
            low = middle
    return plan_at(high)


def _global_cut(scores: list[torch.Tensor], fraction: float, minimum: int) -> list[list[int]]:
    """Remove `fraction` of the units that are not among each layer's `minimum` best, lowest layer-normalised score
    first across layers; the kept indices per layer."""
    candidates = []
    for layer, row in enumerate(scores):
        normalised = row / row.norm().clamp_min(1e-12)
        order = normalised.argsort(descending=True, stable=True).tolist()
        candidates += [(normalised[j].item(), layer, j) for j in order[minimum:]]
    candidates.sort()
    removed = {(layer, j) for _, layer, j in candidates[: round(fraction * len(candidates))]}
    return [[j for j in range(len(row)) if (layer, j) not in removed] for layer, row in enumerate(scores)]


@torch.no_grad()
def apply_plan(model: PreTrainedModel, plan: StructuredPlan) -> PreTrainedModel:
    """A physically smaller copy of `model` (left unchanged) keeping the plan's heads and neurons."""
    if not isinstance(model, BertForSequenceClassification):
        raise ValueError(f"apply_plan prunes a BertForSequenceClassification, got {type(model).__name__}")
    heads, neurons, head_size, hidden = _sizes(model)
    if len(plan.heads) != len(heads) or len(plan.neurons) != len(heads):
        raise ValueError(f"the plan has {len(plan.heads)} layers, the model {len(heads)}")
    for kept, available, what in ((plan.heads, heads, "heads"), (plan.neurons, neurons, "neurons")):
        if any(not units or min(units) < 0 or max(units) >= limit for units, limit in zip(kept, available)):
            raise ValueError(f"the plan's {what} must keep at least one of the layer's {what} per layer")
    values = model.config.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "auto_map", "attention_head_size",
                "heads_per_layer", "intermediate_sizes"):  # fmt: skip
        values.pop(key, None)
    head_counts, neuron_counts = [len(h) for h in plan.heads], [len(n) for n in plan.neurons]
    if all(count * head_size == hidden for count in head_counts) and len(set(neuron_counts)) == 1:
        config = BertConfig(**{**values, "intermediate_size": neuron_counts[0]})
        pruned = BertForSequenceClassification(config)
    else:
        config = PrunedBertConfig(attention_head_size=head_size, heads_per_layer=head_counts,
                                  intermediate_sizes=neuron_counts,
                                  **{**values, "num_attention_heads": max(head_counts)})  # fmt: skip
        pruned = PrunedBertForSequenceClassification(config)
    state = {}
    for key, value in model.state_dict().items():
        if "encoder.layer." not in key:
            state[key] = value
            continue
        index, name = key.split("encoder.layer.", 1)[1].split(".", 1)
        layer = int(index)
        rows = torch.tensor([h * head_size + k for h in plan.heads[layer] for k in range(head_size)])
        kept_neurons = torch.tensor(plan.neurons[layer])
        if any(name.startswith(f"attention.self.{p}.") for p in ("query", "key", "value")):
            value = value[rows]
        elif name == "attention.output.dense.weight":
            value = value[:, rows]
        elif name.startswith("intermediate.dense."):
            value = value[kept_neurons]
        elif name == "output.dense.weight":
            value = value[:, kept_neurons]
        state[key] = value.clone()
    pruned.load_state_dict(state, strict=True)
    pruned.config._attn_implementation = model.config._attn_implementation
    pruned.config.structured_pruning = {"heads": head_counts, "neurons": neuron_counts}
    return pruned.train(model.training)
