"""Unstructured sparsity (bertdistill.compression.sparsity): the schedule and masks against hand-computed references,
and the option on a distillation trainer (final sparsity, stock checkpoint, resume, movement scores, errors)."""

import copy
import json

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification, TrainerCallback

from bertdistill import DistillationTrainingConfig
from bertdistill.compression.sparsity import (
    MagnitudeMaskedLinear,
    MovementMaskedLinear,
    SparsitySchedule,
    add_sparsity_masks,
    cubic_sparsity,
    encoder_linear_names,
    magnitude_mask,
    movement_scores,
    remove_sparsity_masks,
)

from conftest import make_teacher
from test_trainer import StopAt, make_trainer, state

ENCODER_LINEARS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


def encoder_weights(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model_state.items() if ".encoder.layer." in k and k.endswith(".weight") and v.dim() == 2}


# ---- schedule and masks ---------------------------------------------------------------------------------------------


def test_cubic_schedule_matches_the_papers_formula():
    # s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3, t0 = 10, n dt = 40, s_f = 0.8, by hand.
    expected = {0: 0.0, 10: 0.0, 20: 0.8 - 0.8 * 0.75**3, 30: 0.8 - 0.8 * 0.5**3, 40: 0.8 - 0.8 * 0.25**3, 50: 0.8}
    expected[60] = 0.8
    for step, value in expected.items():
        assert cubic_sparsity(step, 0.8, 10, 50) == pytest.approx(value)
    assert cubic_sparsity(20, 0.8, 10, 50) == pytest.approx(0.4625)
    assert cubic_sparsity(30, 0.8, 10, 50, initial_sparsity=0.2) == pytest.approx(0.8 - 0.6 * 0.125)

    schedule = SparsitySchedule.from_fractions(0.9, 0.1, 0.7, 10, max_steps=100)
    assert (schedule.start_step, schedule.end_step) == (10, 70)
    assert [t for t in range(1, 101) if schedule.updates_at(t)] == [10, 20, 30, 40, 50, 60, 70]
    # An end that is no multiple of the frequency away from the start is an update step too.
    uneven = SparsitySchedule(0.5, 0, 25, 10)
    assert [t for t in range(1, 40) if uneven.updates_at(t)] == [10, 20, 25]
    # A schedule squeezed onto one step prunes in one go after the first step.
    squeezed = SparsitySchedule.from_fractions(0.5, 0.0, 0.1, 10, max_steps=3)
    assert [t for t in range(1, 4) if squeezed.updates_at(t)] == [1] and squeezed.sparsity_at(1) == 0.5


def test_magnitude_mask_zeroes_exactly_the_k_smallest():
    weight = torch.randn(7, 9, generator=torch.Generator().manual_seed(0))
    order = np.argsort(np.abs(weight.numpy()).ravel())
    for sparsity, k in ((0.0, 0), (0.5, 32), (0.9, 57), (0.99, 62)):  # k = nearest whole number of 63 * sparsity
        mask = magnitude_mask(weight, sparsity)
        assert set(np.flatnonzero(~mask.numpy().ravel())) == set(order[:k])
    # Ties (e.g. weights already zero): exactly k pruned, the lower indices first.
    tied = torch.tensor([[0.0, 3.0, 0.0], [0.0, 1.0, 0.0]])
    assert magnitude_mask(tied, 0.5).tolist() == [[False, True, False], [False, True, True]]


def test_masked_layers_forward_and_magnitude_keeps_pruned_weights_pruned():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    MagnitudeMaskedLinear.attach(layer)
    dense = layer.weight.detach().clone()
    layer.set_sparsity(0.4)  # 12 of 30
    mask = magnitude_mask(dense, 0.4)
    assert int((~layer.weight_mask).sum()) == 12 and torch.equal(layer.weight_mask, mask)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ (dense * mask).T + layer.bias)
    # A pruned weight that grows while masked (weight decay, stale Adam moments) stays pruned: ranking is on W * M.
    with torch.no_grad():
        layer.weight[~mask] = 100.0
    layer.set_sparsity(0.6)
    assert not layer.weight_mask[~mask].any() and int((~layer.weight_mask).sum()) == 18


def test_movement_scores_get_the_straight_through_gradient():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    MovementMaskedLinear.attach(layer)
    with torch.no_grad():
        layer.mask_scores.copy_(torch.arange(12.0).view(3, 4))
    layer.set_sparsity(0.25)  # the 3 lowest scores (flat indices 0, 1, 2) pruned
    mask = torch.ones(3, 4)
    mask.view(-1)[:3] = 0
    x = torch.randn(2, 4)
    out = layer(x)
    torch.testing.assert_close(out, x @ (layer.weight * mask).T)
    out.sum().backward()
    grad_masked_weight = torch.ones(2, 3).T @ x  # dL/dW' for L = sum(x W'^T)
    torch.testing.assert_close(layer.mask_scores.grad, grad_masked_weight * layer.weight.detach())
    torch.testing.assert_close(layer.weight.grad, grad_masked_weight * mask)


def test_masks_cover_the_encoder_linears_only_and_come_off_as_plain_layers(tokenizer):
    model = make_teacher(tokenizer, layers=2)
    names = add_sparsity_masks(model, "movement")
    assert len(names) == 2 * 6 and all(name.startswith("bert.encoder.layer.") for name in names)
    assert all(any(name.endswith(part) for part in ENCODER_LINEARS) for name in names)
    keys = model.state_dict().keys()
    assert "bert.encoder.layer.0.attention.self.query.mask_scores" in keys
    assert not any("mask" in key for key in keys if "encoder" not in key)
    assert len(movement_scores(model)) == 12
    with pytest.raises(ValueError, match="masked for movement pruning already"):
        add_sparsity_masks(model, "magnitude")
    remove_sparsity_masks(model)
    assert all(type(model.get_submodule(name)) is nn.Linear for name in names)
    assert set(model.state_dict()) == set(BertForSequenceClassification(model.config).state_dict())
    assert encoder_linear_names(model) == names


# ---- in a trainer ---------------------------------------------------------------------------------------------------


def test_trained_student_has_the_sparsity_and_saves_a_stock_checkpoint(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path / "out", tokenizer, max_steps=8, sparsity=0.75, pruning_frequency=2)
    dense_before = state(trainer.student)
    result = trainer.train()
    assert result.metrics["sparsity"] == pytest.approx(0.75, abs=0.01)
    report = result.metrics["sparsity_report"]
    assert report["method"] == "magnitude" and report["pruned_layers"] == 12
    json.dumps(result.metrics)  # what save_metrics writes to train_results.json
    trainer.save_model()
    saved = safetensors.torch.load_file(tmp_path / "out" / "model.safetensors")
    assert set(saved) == set(dense_before)  # no mask keys: a stock BertForSequenceClassification
    for name, weight in encoder_weights(saved).items():
        assert abs(int((weight == 0).sum()) - 0.75 * weight.numel()) <= 1, name
    for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(saved[name] == 0, dense_before[name] == 0), name  # only the [PAD] embedding row is zero
    loaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(4)])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trainer.student.eval()
    torch.testing.assert_close(loaded.eval()(**inputs).logits, trainer.student(**inputs).logits)
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Sparsity" in card and "| target sparsity | 0.7500 |" in card


@pytest.mark.parametrize("method", ["magnitude", "movement"])
def test_resume_gives_the_same_weights_and_masks(tmp_path, tokenizer, method):
    common = dict(
        max_steps=8, save_strategy="steps", save_steps=4, sparsity=0.5, pruning_method=method, pruning_frequency=2
    )
    teacher = make_teacher(tokenizer)
    full = make_trainer(tmp_path / "full", tokenizer, teacher=teacher, **{**common, "save_strategy": "no"})
    full.train()
    interrupted = make_trainer(tmp_path / "cut", tokenizer, teacher=teacher, callbacks=[StopAt(4)], **common)
    interrupted.train()
    checkpoint = tmp_path / "cut" / "checkpoint-4"
    saved = safetensors.torch.load_file(checkpoint / "model.safetensors")
    suffix = "weight_mask" if method == "magnitude" else "mask_scores"
    assert sum(key.endswith(suffix) for key in saved) == 12  # the masks travel with the checkpoint
    resumed = make_trainer(tmp_path / "cut", tokenizer, teacher=teacher, **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    final, again = state(full.student), state(resumed.student)
    for key, value in final.items():
        torch.testing.assert_close(again[key], value, rtol=1e-5, atol=1e-6)
    for key, value in encoder_weights(final).items():  # same zeros, i.e. the same final masks
        assert torch.equal(again[key] == 0, value == 0), key


class RecordScores(TrainerCallback):
    def __init__(self, student):
        self.student = student

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.initial = [s.detach().clone() for s in movement_scores(self.student)]
        self.groups = [(group["lr"], group["weight_decay"], {id(p) for p in group["params"]}) for group in
                       optimizer.param_groups]  # fmt: skip
        self.ids = {id(s) for s in movement_scores(self.student)}

    def on_train_end(self, args, state, control, **kwargs):
        self.final = [s.detach().clone() for s in movement_scores(self.student)]


def test_movement_scores_are_optimised_with_their_own_learning_rate(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path, tokenizer, max_steps=6, sparsity=0.6, pruning_method="movement", pruning_frequency=1,
        movement_scores_lr=0.05, weight_decay=0.01,
    )  # fmt: skip
    recorder = RecordScores(trainer.student)
    trainer.add_callback(recorder)
    result = trainer.train()
    score_groups = [group for group in recorder.groups if group[2] & recorder.ids]
    assert len(score_groups) == 1 and score_groups[0][2] == recorder.ids
    assert score_groups[0][:2] == (0.05, 0.0)
    assert len(recorder.final) == 12 and all(not torch.equal(a, b) for a, b in zip(recorder.initial, recorder.final))
    assert result.metrics["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert not any("mask" in key for key in trainer.student.state_dict())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sparsity": 1.0}, "in \\[0, 1\\)"),
        ({"sparsity": -0.1}, "in \\[0, 1\\)"),
        ({"sparsity": 0.5, "pruning_method": "random"}, "valid ones: magnitude, movement"),
        ({"sparsity": 0.5, "pruning_start": 0.5, "pruning_end": 0.5}, "0 <= start < end <= 1"),
        ({"sparsity": 0.5, "pruning_end": 1.2}, "0 <= start < end <= 1"),
        ({"sparsity": 0.5, "pruning_frequency": 0}, "pruning_frequency"),
        ({"sparsity": 0.5, "movement_scores_lr": 0.0}, "movement_scores_lr"),
    ],
)
def test_bad_sparsity_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        DistillationTrainingConfig(output_dir=str(tmp_path), report_to=[], **options)


def test_dynabert_elastic_layers_are_refused_before_training(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer)
    trainer = make_trainer(
        tmp_path, tokenizer, teacher=teacher, student=copy.deepcopy(teacher), method="dynabert", stage="width",
        rewire=False, sparsity=0.5,
    )  # fmt: skip
    before = state(trainer.student)
    with pytest.raises(ValueError, match="ElasticLinear"):
        trainer.train()
    assert trainer.state.global_step == 0 and all(torch.equal(v, state(trainer.student)[k]) for k, v in before.items())
