"""Where a fresh regression head starts: at the training labels' mean rather than at 0.

transformers initialises a new task head's output bias to 0. On STS-B (labels 0-5, mean 2.7) the first steps then
spend their large gradients on moving every prediction to the mean, and a network that is not yet fine-tuned can
answer them by making its [CLS] state the same for every input: the loss sits on the predict-the-mean plateau
(MSE = the label variance) and does not leave it. Measured on STS-B with 3 layers of the packaged MiniLM (not
fine-tuned), learning rate 1e-4, 3 epochs: plain fine-tuning reached Pearson 0.433 on one seed and 0.644 on another,
BYOT (three regression exits on one trunk) 0.04-0.13 on every seed and learning rate tried; with the output bias
started at the label mean, 0.702 and 0.645-0.683 (docs/self_distillation_notes.md). A head whose bias is not
exactly 0 (a fine-tuned teacher's head copied into a student) is left alone: the rule only touches untrained heads.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

REGRESSION_HEAD_INITS = ("label_mean", "zero")


def check_regression_head_init(value: str) -> None:
    if value not in REGRESSION_HEAD_INITS:
        raise ValueError(f"regression_head_init must be one of {', '.join(REGRESSION_HEAD_INITS)}, got {value!r}")


def regression_label_mean(dataset) -> float | None:
    """Mean of a training set's `labels` (or `label`) column; `None` when it has neither or no rows."""
    if dataset is None or not hasattr(dataset, "column_names"):
        return None
    column = next((name for name in ("labels", "label") if name in dataset.column_names), None)
    if column is None or len(dataset) == 0:
        return None
    return float(torch.as_tensor(dataset[column], dtype=torch.float64).mean())


def untrained_regression_outputs(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """`(name, layer)` of every regression output layer in `model` that was never trained: in each
    `PreTrainedModel` inside it that predicts one value, the `nn.Linear` layers with one output outside its encoder
    (`base_model`) whose bias is exactly 0 - the head's last layer (every exit's, for a multi-exit network)."""
    found = []
    for prefix, network in model.named_modules():
        if not isinstance(network, PreTrainedModel) or getattr(network.config, "num_labels", None) != 1:
            continue
        encoder = network.base_model if network.base_model is not network else None
        inside = {id(m) for m in encoder.modules()} if encoder is not None else set()
        for name, layer in network.named_modules():
            if (isinstance(layer, nn.Linear) and layer.out_features == 1 and layer.bias is not None
                    and id(layer) not in inside and not layer.bias.detach().any()):  # fmt: skip
                found.append((f"{prefix}.{name}" if prefix else name, layer))
    return found


def start_regression_heads(model: nn.Module, train_dataset, how: str = "label_mean") -> dict[str, Any] | None:
    """With `how="label_mean"`, set the bias of `model`'s untrained regression output layers (see
    [`untrained_regression_outputs`]) to the mean of `train_dataset`'s labels. Returns what was done (`how`, `value`,
    `layers`) for the run's record, or `None` when there was nothing to do (`how="zero"`, no regression head, only
    trained ones, or no labels to take the mean of)."""
    check_regression_head_init(how)
    if how == "zero":
        return None
    layers = untrained_regression_outputs(model)
    if not layers:
        return None
    mean = regression_label_mean(train_dataset)
    if mean is None:
        logger.info("No training labels to take the mean of: the regression head starts at 0")
        return None
    with torch.no_grad():
        for _, layer in layers:
            layer.bias.fill_(mean)
    names = [name for name, _ in layers]
    logger.info("Regression head starts at the training labels' mean %.4f (%s)", mean, ", ".join(names))
    return {"how": how, "value": mean, "layers": names}
