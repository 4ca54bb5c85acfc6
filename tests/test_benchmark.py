"""bertdistill.benchmark: latency measured side by side, and speedups paired within each repeat."""

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill.benchmark import SideBySide, measure_side_by_side

from conftest import tiny_config


def test_speedups_are_medians_of_per_repeat_ratios():
    # Repeat 2 is a burst of load that slows both models 10x: a pair keeps its ratio, so the burst does not count.
    run = SideBySide({"teacher": [2.0, 20.0, 2.2, 1.8], "student": [1.0, 10.0, 1.0, 1.2]})
    assert run.speedup("teacher", over="teacher") == 1.0
    assert run.speedup("student", over="teacher") == pytest.approx(2.0)  # median of the ratios 2.0, 2.0, 2.2, 1.5
    assert run.median("teacher") / run.median("student") == pytest.approx(2.1 / 1.1), "the ratio of the medians"
    with pytest.raises(ValueError):
        SideBySide({"teacher": [1.0, 2.0], "student": [1.0]}).speedup("student", over="teacher")


def test_every_model_is_timed_every_repeat(tokenizer):
    torch.manual_seed(0)
    big = BertForSequenceClassification(tiny_config(len(tokenizer), layers=4))
    small = BertForSequenceClassification(tiny_config(len(tokenizer), layers=1))
    inputs = tokenizer(["a short sentence"] * 4, return_tensors="pt")
    run = measure_side_by_side({"big": big, "small": small}, inputs, repeats=5, warmup=1)
    assert [len(v) for v in run.times.values()] == [5, 5] and all(t > 0 for v in run.times.values() for t in v)
    assert not big.training and not small.training
