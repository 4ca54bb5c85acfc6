"""bertdistill.benchmark: latency measured side by side, and speedups paired within each repeat."""

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill.benchmark import interleaved_latency, interleaved_times, paired_speedups

from conftest import tiny_config


def test_paired_speedups_are_medians_of_per_repeat_ratios():
    # Repeat 2 is a burst of load that slows both models 10x: a pair keeps its ratio, so the burst does not count.
    times = {"teacher": [2.0, 20.0, 2.2, 1.8], "student": [1.0, 10.0, 1.0, 1.2]}
    speedups = paired_speedups(times, "teacher")
    assert speedups["teacher"] == 1.0
    assert speedups["student"] == pytest.approx(2.0)  # median of the ratios 2.0, 2.0, 2.2, 1.5
    assert 2.1 / 1.1 != pytest.approx(2.0), "the ratio of the medians is another number"
    with pytest.raises(ValueError):
        paired_speedups({"teacher": [1.0, 2.0], "student": [1.0]}, "teacher")


def test_interleaved_times_measure_every_model_every_repeat(tokenizer):
    torch.manual_seed(0)
    big = BertForSequenceClassification(tiny_config(len(tokenizer), layers=4))
    small = BertForSequenceClassification(tiny_config(len(tokenizer), layers=1))
    inputs = tokenizer(["a short sentence"] * 4, return_tensors="pt")
    times = interleaved_times({"big": big, "small": small}, inputs, repeats=5, warmup=1)
    assert [len(v) for v in times.values()] == [5, 5] and all(t > 0 for v in times.values() for t in v)
    medians = interleaved_latency({"big": big, "small": small}, inputs, repeats=3, warmup=1)
    assert set(medians) == {"big", "small"} and all(v > 0 for v in medians.values())
