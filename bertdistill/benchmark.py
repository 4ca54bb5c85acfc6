"""Size and CPU latency of saved models, measured side by side so that ratios are fair on a noisy machine."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk(checkpoint_dir: str | os.PathLike) -> int:
    """Bytes of the weight files (`*.safetensors`, `*.bin`) in a checkpoint folder, checkpoints-* excluded."""
    return sum(p.stat().st_size for p in Path(checkpoint_dir).glob("*") if p.suffix in (".safetensors", ".bin"))


@dataclass
class SideBySide:
    """Seconds of each of several forwards of every model, the models taking turns within every repeat: the i-th
    times of two models were measured moments apart, so a burst of load on a shared machine hits both alike."""

    times: dict[str, list[float]]

    def median(self, name: str) -> float:
        """Median seconds per forward of `name`."""
        return statistics.median(self.times[name])

    def speedup(self, name: str, over: str) -> float:
        """How many times faster `name` runs than `over`: the median over repeats of `over`'s time divided by
        `name`'s in the same repeat. Load that drifts during the run slows both sides of a pair alike, so this moves
        less between runs than the ratio of the two medians."""
        pairs = zip(self.times[over], self.times[name], strict=True)
        return statistics.median(slow / fast for slow, fast in pairs)


@torch.inference_mode()
def measure_side_by_side(
    models: dict[str, PreTrainedModel],
    inputs: dict[str, torch.Tensor] | None = None,
    repeats: int = 20,
    warmup: int = 3,
    inputs_by_model: dict[str, dict[str, torch.Tensor]] | None = None,
) -> SideBySide:
    """Time `repeats` forwards of every model, the models taking turns within every repeat.

    Args:
        models (`dict[str, nn.Module]`): what to time; anything with `eval()` that is called with keyword inputs (an
            ONNX Runtime session wrapper too).
        inputs (`dict[str, torch.Tensor]`, *optional*): the same inputs for every model.
        inputs_by_model (`dict[str, dict[str, torch.Tensor]]`, *optional*): each model's own inputs instead (the same
            sentences through each model's tokenizer, e.g. after vocabulary pruning).
    """
    if (inputs is None) == (inputs_by_model is None):
        raise ValueError("give exactly one of inputs and inputs_by_model")
    feeds = inputs_by_model or dict.fromkeys(models, inputs)
    for name, model in models.items():
        model.eval()
        for _ in range(warmup):
            model(**feeds[name])
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(**feeds[name])
            times[name].append(time.perf_counter() - start)
    return SideBySide(times)
