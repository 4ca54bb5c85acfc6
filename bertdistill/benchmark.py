"""Size and CPU latency of saved models, measured side by side so that ratios are fair on a noisy machine."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
from transformers import PreTrainedModel


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk(checkpoint_dir: str | os.PathLike) -> int:
    """Bytes of the weight files (`*.safetensors`, `*.bin`) in a checkpoint folder, checkpoints-* excluded."""
    return sum(p.stat().st_size for p in Path(checkpoint_dir).glob("*") if p.suffix in (".safetensors", ".bin"))


@torch.inference_mode()
def interleaved_times(
    models: dict[str, PreTrainedModel], inputs: dict[str, torch.Tensor], repeats: int = 20, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds of each of `repeats` forwards of every model on the same `inputs`.

    Models take turns within every repeat, so a burst of load on a shared machine hits all of them alike: the i-th
    times of two models were measured moments apart (see `paired_speedups`).
    """
    for model in models.values():
        model.eval()
        for _ in range(warmup):
            model(**inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(**inputs)
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_latency(
    models: dict[str, PreTrainedModel], inputs: dict[str, torch.Tensor], repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per forward of each model on the same `inputs`, the models taking turns (`interleaved_times`)."""
    times = interleaved_times(models, inputs, repeats=repeats, warmup=warmup)
    return {name: statistics.median(values) for name, values in times.items()}


def paired_speedups(times: dict[str, list[float]], reference: str) -> dict[str, float]:
    """How many times faster than `reference` each model runs: the median over repeats of the reference's time
    divided by the model's time in the same repeat. Load that drifts over the run slows both sides of a pair alike,
    so this moves less between runs than the ratio of the two medians."""
    return {
        name: statistics.median(r / t for r, t in zip(times[reference], values, strict=True))
        for name, values in times.items()
    }
