"""Unstructured sparsity while training: gradual magnitude pruning (Zhu & Gupta 2017) and movement pruning (Sanh et
al. 2020), both following the cubic sparsity schedule, on the linear layers of a BERT-like encoder.

A pruned layer is a [`MaskedLinear`]: its `nn.Linear` changes class in place (as `make_elastic` does), keeps its
`weight` and `bias` parameters under their names, and multiplies the weight by a binary mask in `forward`:

- `"magnitude"` ([`MagnitudeMaskedLinear`]): the mask is a boolean buffer, `weight_mask`. At every update step it
  zeroes the `k` smallest `|weight * weight_mask|` of the layer. Ranking the masked weights rather than the stored ones
  (TF `model_pruning` ranks the stored weights) keeps a pruned weight pruned: under AdamW a masked weight still moves
  (weight decay, stale Adam moments) although the loss sends it no gradient.
- `"movement"` ([`MovementMaskedLinear`]): learned importance scores, `mask_scores` (a parameter of the weight's shape,
  zeros at the start as in Sanh et al.'s code), and the current sparsity, the scalar buffer `mask_sparsity`. Every
  forward keeps the weights of the highest scores and zeroes the `k` lowest; the mask's gradient passes straight
  through to the scores, which thus receive `dL/dW' * W` (`W' = W * mask`).

Ranking is per layer (every pruned layer has the same sparsity), the choice of both papers. By default the pruned
layers are the `nn.Linear` modules of `model.base_model.encoder`: query, key, value, attention output, FFN in and FFN
out of every layer; the embeddings, the pooler and the classifier stay dense. `k` is the nearest whole number to
`sparsity * weights in the layer`.

Masks, scores and the movement sparsity are registered on the pruned modules, so they are part of the model's state
dict: a checkpoint written during training carries them (`<layer>.weight_mask`, `<layer>.mask_scores`,
`<layer>.mask_sparsity`) and loading it restores the exact masks. [`remove_sparsity_masks`] multiplies the masks
into the weights and turns the layers back into plain `nn.Linear`: the model then saves as a stock checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback

PRUNING_METHODS = ("magnitude", "movement")


def check_pruning_options(sparsity: float, method: str, start: float, end: float, frequency: int) -> None:
    """Raise `ValueError` for sparsity options no schedule can follow (see [`SparsitySchedule.from_fractions`])."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity is the fraction of weights to zero, in [0, 1); got {sparsity}")
    if method not in PRUNING_METHODS:
        raise ValueError(f"Unknown pruning_method {method!r}; valid ones: {', '.join(PRUNING_METHODS)}")
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(
            f"pruning_start and pruning_end are fractions of the training steps with 0 <= start < end <= 1; got "
            f"start={start}, end={end}"
        )
    if frequency < 1:
        raise ValueError(f"pruning_frequency is a number of steps, >= 1; got {frequency}")


# ---- the schedule ---------------------------------------------------------------------------------------------------


def cubic_sparsity(
    step: int, final_sparsity: float, start_step: int, end_step: int, initial_sparsity: float = 0.0
) -> float:
    """Zhu & Gupta's schedule: `s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n Δt))^3` for `t_0 <= t <= t_0 + n Δt`,
    `s_i` before the start and `s_f` from the end (`end_step = t_0 + n Δt`) on. It prunes fast while many redundant
    weights are left and slowly once few are."""
    if step >= end_step:
        return final_sparsity
    if step <= start_step:
        return initial_sparsity
    progress = (step - start_step) / (end_step - start_step)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


@dataclass(frozen=True)
class SparsitySchedule:
    """When the masks change and to which sparsity.

    Masks change after the optimizer step of every `frequency`-th step from `start_step` on, and at `end_step` (also
    when `end_step - start_step` is no multiple of `frequency`, so that training always reaches `final_sparsity`);
    after `end_step` they stay fixed and the remaining steps fine-tune the sparse model.

    Args:
        final_sparsity (`float`): `s_f`, the fraction of zero weights in every pruned layer at the end.
        start_step (`int`): `t_0`.
        end_step (`int`): `t_0 + n Δt`.
        frequency (`int`): `Δt`, steps between mask updates.
        initial_sparsity (`float`, *optional*, defaults to `0.0`): `s_i`.
    """

    final_sparsity: float
    start_step: int
    end_step: int
    frequency: int
    initial_sparsity: float = 0.0

    @classmethod
    def from_fractions(
        cls, final_sparsity: float, start: float, end: float, frequency: int, max_steps: int
    ) -> SparsitySchedule:
        """The schedule over `max_steps` training steps, from `start * max_steps` to `end * max_steps` (nearest steps;
        an end that rounds onto the start prunes to `final_sparsity` in one go at the first step after it)."""
        start_step, end_step = round(start * max_steps), round(end * max_steps)
        return cls(final_sparsity, start_step, max(end_step, start_step), frequency)

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity)

    def updates_at(self, step: int) -> bool:
        """Whether the masks change after the optimizer step that makes `step` steps done. A function of the step
        alone, so a run resumed from a checkpoint updates exactly where an uninterrupted one does."""
        last = max(self.end_step, 1)  # step 0 is never completed, so a schedule ending there ends at step 1
        return step == last or (self.start_step <= step < last and (step - self.start_step) % self.frequency == 0)


# ---- masks ----------------------------------------------------------------------------------------------------------


def pruned_count(sparsity: float, numel: int) -> int:
    """How many of a layer's `numel` weights are zero at `sparsity`: the nearest whole number (halves round up)."""
    return min(numel, max(0, int(sparsity * numel + 0.5)))


def prune_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """A boolean mask shaped like `scores`, False at its `count` lowest values: exactly `count` of them, ties going to
    the lower flat index first (deterministic, so every process computes the same mask from the same scores)."""
    flat = scores.detach().flatten().float()
    keep = torch.ones_like(flat, dtype=torch.bool)
    if count >= flat.numel():
        keep.zero_()
    elif count > 0:
        # A selection instead of a full sort: linear time, which matters for BERT-base's 2.4M-weight FFN matrices.
        threshold = flat.kthvalue(count).values
        below = flat < threshold
        keep[below] = False
        ties = torch.nonzero(flat == threshold).flatten()[: count - int(below.sum())]
        keep[ties] = False
    return keep.view(scores.shape)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask that zeroes the `pruned_count(sparsity, weight.numel())` smallest `|weight|` (boolean, True = kept)."""
    return prune_lowest(weight.abs(), pruned_count(sparsity, weight.numel()))


class _TopKStraightThrough(torch.autograd.Function):
    """Movement pruning's mask: forward keeps the highest scores (a float 0/1 tensor); backward is the identity
    (straight-through estimator), so the scores receive the mask's gradient, `dL/dW' * W`."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        return prune_lowest(scores, pruned_count(sparsity, scores.numel())).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


class MaskedLinear(nn.Linear):
    """`nn.Linear` whose forward uses `weight * mask`. Made from a plain `nn.Linear` by [`add_sparsity_masks`]; see
    the subclasses for where the mask comes from."""

    pruning_method: str
    # What `attach` registers on the module (removed again by `detach_mask`).
    mask_state_names: tuple[str, ...] = ()

    @classmethod
    def attach(cls, linear: nn.Linear) -> None:
        """Turn `linear` into this class in place, with a mask that keeps every weight."""
        raise NotImplementedError

    def mask(self) -> torch.Tensor:
        """The current mask (boolean, True = kept, no gradient)."""
        raise NotImplementedError

    def set_sparsity(self, sparsity: float) -> None:
        """Move the layer to `sparsity` (what the schedule calls at every update step)."""
        raise NotImplementedError

    def forward_mask(self) -> torch.Tensor:
        """The mask the forward multiplies in (with its gradient path, if any)."""
        return self.mask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.forward_mask().to(self.weight.dtype), self.bias)

    def detach_mask(self) -> None:
        """Multiply the mask into `weight` and become a plain `nn.Linear` again (no buffer or parameter left)."""
        with torch.no_grad():
            self.weight.mul_(self.mask().to(self.weight.dtype))
        for name in self.mask_state_names:
            delattr(self, name)
        self.__class__ = nn.Linear


class MagnitudeMaskedLinear(MaskedLinear):
    """Gradual magnitude pruning: a boolean `weight_mask` buffer that zeroes the smallest masked weights."""

    pruning_method = "magnitude"
    mask_state_names = ("weight_mask",)

    @classmethod
    def attach(cls, linear: nn.Linear) -> None:
        linear.__class__ = cls
        linear.register_buffer("weight_mask", torch.ones_like(linear.weight, dtype=torch.bool))

    def mask(self) -> torch.Tensor:
        return self.weight_mask

    @torch.no_grad()
    def set_sparsity(self, sparsity: float) -> None:
        self.weight_mask.copy_(magnitude_mask(self.weight * self.weight_mask, sparsity))


class MovementMaskedLinear(MaskedLinear):
    """Movement pruning: `mask_scores` (trainable, float32) and the current sparsity `mask_sparsity` (a buffer, so a
    checkpoint holds it); the mask keeps the highest scores."""

    pruning_method = "movement"
    mask_state_names = ("mask_scores", "mask_sparsity")

    @classmethod
    def attach(cls, linear: nn.Linear) -> None:
        linear.__class__ = cls
        linear.mask_scores = nn.Parameter(torch.zeros_like(linear.weight, dtype=torch.float32))
        linear.register_buffer("mask_sparsity", torch.zeros((), dtype=torch.float32, device=linear.weight.device))

    def mask(self) -> torch.Tensor:
        return prune_lowest(self.mask_scores, pruned_count(float(self.mask_sparsity), self.weight.numel()))

    def forward_mask(self) -> torch.Tensor:
        return _TopKStraightThrough.apply(self.mask_scores, float(self.mask_sparsity))

    @torch.no_grad()
    def set_sparsity(self, sparsity: float) -> None:
        self.mask_sparsity.fill_(sparsity)


MASKED_LINEAR_CLASSES: dict[str, type[MaskedLinear]] = {
    "magnitude": MagnitudeMaskedLinear,
    "movement": MovementMaskedLinear,
}


# ---- a model's pruned layers ----------------------------------------------------------------------------------------


def encoder_linear_names(model: nn.Module) -> list[str]:
    """Names (as in `model.named_modules()`) of the linear layers in `model`'s encoder, `model.base_model.encoder`:
    for BERT each layer's query, key, value, attention output, intermediate and output dense layers. Embeddings,
    pooler and task head are outside the encoder.

    Raises:
        `ValueError`: when `model` has no `base_model.encoder`.
    """
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"{type(model).__name__} has no base_model.encoder whose linear layers could be pruned")
    inside = {id(module) for module in encoder.modules()}
    return [name for name, module in model.named_modules() if id(module) in inside and isinstance(module, nn.Linear)]


def add_sparsity_masks(
    model: nn.Module, method: str = "magnitude", module_names: list[str] | None = None
) -> list[str]:
    """Make the linear layers `module_names` of `model` (default: [`encoder_linear_names`]) [`MaskedLinear`]s of
    `method`, in place, with masks that keep every weight (sparsity 0); layers masked already stay as they are.
    Returns the names.

    Raises:
        `ValueError`: for an unknown method, a layer masked by the other method, or a layer that is not a plain
        `nn.Linear` (e.g. DynaBERT's `ElasticLinear`, whose width slicing the masks would not follow).
    """
    if method not in MASKED_LINEAR_CLASSES:
        raise ValueError(f"Unknown pruning method {method!r}; valid ones: {', '.join(MASKED_LINEAR_CLASSES)}")
    names = encoder_linear_names(model) if module_names is None else list(module_names)
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, MaskedLinear):
            if module.pruning_method != method:
                raise ValueError(f"{name} is masked for {module.pruning_method} pruning already, not {method}")
            continue
        if type(module) is not nn.Linear:
            raise ValueError(
                f"Unstructured sparsity masks plain nn.Linear layers; {name} is an {type(module).__name__}. "
                "DynaBERT's elastic layers slice their weights to a sub-network, which the masks do not follow: "
                "prune an exported sub-network with another method instead"
            )
        MASKED_LINEAR_CLASSES[method].attach(module)
    return names


def masked_modules(model: nn.Module) -> dict[str, MaskedLinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, MaskedLinear)}


def set_sparsity(model: nn.Module, sparsity: float) -> None:
    """Move every masked layer of `model` to `sparsity`."""
    for module in masked_modules(model).values():
        module.set_sparsity(sparsity)


def movement_scores(model: nn.Module) -> list[nn.Parameter]:
    """The importance scores of `model`'s movement-pruned layers (what gets its own learning rate)."""
    return [
        module.mask_scores for module in masked_modules(model).values() if isinstance(module, MovementMaskedLinear)
    ]


def layer_sparsity(model: nn.Module, module_names: list[str]) -> dict[str, float]:
    """`{name: fraction of zero weights}` of the linear layers `module_names`, counting the masks of masked ones."""
    fractions = {}
    for name in module_names:
        module = model.get_submodule(name)
        weight = module.weight.detach()
        if isinstance(module, MaskedLinear):
            weight = weight * module.mask().to(weight.dtype)
        fractions[name] = float((weight == 0).sum()) / weight.numel()
    return fractions


def remove_sparsity_masks(model: nn.Module) -> dict[str, float]:
    """Multiply every mask of `model` into its weight and turn the masked layers back into plain `nn.Linear`: the
    model has no mask, score or extra buffer left and `save_pretrained` writes a stock checkpoint (dense tensors that
    hold the zeros). Returns `{name: fraction of zero weights}` of the layers that were masked."""
    names = list(masked_modules(model))
    for module in masked_modules(model).values():
        module.detach_mask()
    return layer_sparsity(model, names)


def summarize_sparsity(fractions: dict[str, float], model: nn.Module) -> dict[str, float | int]:
    """Overall numbers of [`layer_sparsity`]'s result: zero weights over all weights of those layers, their count and
    the least and most sparse layer."""
    sizes = {name: model.get_submodule(name).weight.numel() for name in fractions}
    total = sum(sizes.values())
    zeros = sum(round(fractions[name] * sizes[name]) for name in fractions)
    return {
        "sparsity": zeros / total if total else 0.0,
        "pruned_layers": len(fractions),
        "pruned_layer_weights": total,
        "zero_weights": zeros,
        "min_layer_sparsity": min(fractions.values(), default=0.0),
        "max_layer_sparsity": max(fractions.values(), default=0.0),
    }


class SparsityCallback(TrainerCallback):
    """Runs a [`SparsitySchedule`] over a training run: built from the fractions at the start of training (when
    `state.max_steps` is known), it moves the masked layers of `model` to the schedule's sparsity after the
    optimizer step of every update step.

    Args:
        model (`nn.Module`): the model whose [`MaskedLinear`] layers follow the schedule (the student).
        sparsity (`float`): the final sparsity.
        start (`float`), end (`float`): where the schedule runs, as fractions of the training steps.
        frequency (`int`): steps between mask updates.
    """

    def __init__(self, model: nn.Module, sparsity: float, start: float, end: float, frequency: int):
        self.model, self.sparsity, self.start, self.end, self.frequency = model, sparsity, start, end, frequency
        self.schedule: SparsitySchedule | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.schedule = SparsitySchedule.from_fractions(
            self.sparsity, self.start, self.end, self.frequency, state.max_steps
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.schedule is not None and self.schedule.updates_at(state.global_step):
            set_sparsity(self.model, self.schedule.sparsity_at(state.global_step))
