"""Structured pruning: the pruned model computes what the original does with those heads and neurons zeroed, the
export is stock where it can be and loads without bertdistill where it cannot, targets are met, bad input refused."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from bertdistill import DistillationTrainer, DistillationTrainingConfig
from bertdistill.benchmark import count_parameters
from bertdistill.compression.importance import Importance, compute_importance
from bertdistill.compression.pruning import (
    StructuredPlan,
    apply_plan,
    count_plan_parameters,
    plan_pruning,
    prunable_parameters,
)

from conftest import make_teacher
from test_trainer import tiny_dataset

SENTENCES = ["the movie is good", "a bad film, not good at all", "it was the film"]


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_teacher(tokenizer, layers=3, dropout=0.0).eval()  # 4 heads of 8, 64 neurons per layer


def random_importance(seed=0, layers=3):
    generator = torch.Generator().manual_seed(seed)
    return Importance(torch.rand(layers, 4, generator=generator), torch.rand(layers, 64, generator=generator))


def zeroed_logits(model, tokenizer, plan):
    """The original model with the plan's pruned heads' context and pruned neurons' activations set to zero."""
    hooks, size = [], 8
    for index, layer in enumerate(model.bert.encoder.layer):
        head_mask = torch.zeros(4 * size)
        for h in plan.heads[index]:
            head_mask[h * size : (h + 1) * size] = 1
        neuron_mask = torch.zeros(64)
        neuron_mask[plan.neurons[index]] = 1
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(
            lambda m, args, mask=head_mask: (args[0] * mask,)))  # fmt: skip
        hooks.append(layer.output.dense.register_forward_pre_hook(lambda m, args, mask=neuron_mask: (args[0] * mask,)))
    try:
        with torch.no_grad():
            return model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits
    finally:
        for hook in hooks:
            hook.remove()


def logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits


def test_pruned_model_equals_the_original_with_units_zeroed(model, tokenizer, tmp_path):
    plan = StructuredPlan(heads=[[0, 2], [1], [0, 1, 2, 3]], neurons=[list(range(0, 64, 2)), [5, 9], list(range(64))])
    pruned = apply_plan(model, plan)
    assert pruned.config.model_type == "bertdistill_pruned_bert"
    assert pruned.config.heads_per_layer == [2, 1, 4] and pruned.config.intermediate_sizes == [32, 2, 64]
    assert count_parameters(pruned) == count_plan_parameters(model, plan) < count_parameters(model)
    torch.testing.assert_close(logits(pruned, tokenizer), zeroed_logits(model, tokenizer, plan), atol=1e-5, rtol=1e-5)
    pruned.save_pretrained(tmp_path / "pruned")
    code = f"""
import sys, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "pruned")!r}, trust_remote_code=True)
assert not any(m.startswith("bertdistill") for m in sys.modules)
torch.save(model.eval()(input_ids=torch.tensor([[2, 10, 11, 3]])).logits, {str(tmp_path / "out.pt")!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    with torch.no_grad():
        expected = pruned(input_ids=torch.tensor([[2, 10, 11, 3]])).logits
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").config.heads_per_layer == [2, 1, 4]

    # Pruned again (the iterative schedule): importance per layer at the layer's own size, a second cut.
    batches = [{**tokenizer(SENTENCES, padding=True, return_tensors="pt"), "labels": torch.tensor([1, 0, 1])}]
    importance = compute_importance(pruned, batches, progress=False)
    assert [len(h) for h in importance.heads] == [2, 1, 4] and [len(n) for n in importance.neurons] == [32, 2, 64]
    again_plan = plan_pruning(pruned, importance, target_sparsity=0.3)
    again = apply_plan(pruned, again_plan)
    assert count_parameters(again) == count_plan_parameters(pruned, again_plan) < count_parameters(pruned)


def test_nothing_pruned_is_a_stock_identical_copy(model, tokenizer):
    plan = plan_pruning(model, random_importance(), heads_per_layer=4, neurons_per_layer=64)
    same = apply_plan(model, plan)
    assert type(same.config) is BertConfig and torch.equal(logits(same, tokenizer), logits(model, tokenizer))
    uniform = apply_plan(model, plan_pruning(model, random_importance(), neurons_per_layer=16))
    assert type(uniform.config) is BertConfig and uniform.config.intermediate_size == 16


def test_per_layer_counts_keep_the_most_important(model):
    scores = random_importance(seed=3)
    plan = plan_pruning(model, scores, heads_per_layer=[1, 2, 3], neurons_per_layer=10)
    for layer in range(3):
        assert plan.heads[layer] == sorted(scores.heads[layer].argsort(descending=True)[: layer + 1].tolist())
        assert plan.neurons[layer] == sorted(scores.neurons[layer].argsort(descending=True)[:10].tolist())
    assert StructuredPlan.from_dict(plan.to_dict()) == plan


def test_global_targets_are_met_by_layer_normalised_scores(model):
    importance = random_importance(seed=1)
    # Layer 0's scores are 100x larger: without per-layer normalisation it would keep everything.
    importance.heads[0] *= 100
    importance.neurons[0] *= 100
    for sparsity in (0.25, 0.5, 0.8):
        plan = plan_pruning(model, importance, target_sparsity=sparsity)
        target = count_parameters(model) - round(sparsity * prunable_parameters(model))
        assert count_plan_parameters(model, plan) <= target
        assert all(len(h) >= 1 and len(n) >= 1 for h, n in zip(plan.heads, plan.neurons))
    half = plan_pruning(model, importance, target_sparsity=0.5)
    assert len(half.neurons[0]) < 64, "layer 0 is pruned too, its scores compared after normalisation"
    params = count_plan_parameters(model, half)
    assert plan_pruning(model, importance, target_params=params) == half
    expected_prunable = 3 * (4 * 32 * 32 + 3 * 32 + 32 + 2 * 32 * 64 + 64 + 32)
    assert prunable_parameters(model) == expected_prunable


def test_bad_targets_are_refused(model):
    importance = random_importance()
    with pytest.raises(ValueError, match="exactly one target"):
        plan_pruning(model, importance)
    with pytest.raises(ValueError, match="exactly one target"):
        plan_pruning(model, importance, target_sparsity=0.5, target_params=10)
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        plan_pruning(model, importance, target_sparsity=1.0)
    with pytest.raises(ValueError, match="above the model's"):
        plan_pruning(model, importance, target_params=count_parameters(model) + 1)
    with pytest.raises(ValueError, match="below the smallest reachable, "):
        plan_pruning(model, importance, target_params=1000)
    with pytest.raises(ValueError, match=r"heads_per_layer needs one count per layer \(3\), got 2"):
        plan_pruning(model, importance, heads_per_layer=[1, 2])
    with pytest.raises(ValueError, match="neurons_per_layer must be between 1 and 64"):
        plan_pruning(model, importance, neurons_per_layer=65)
    with pytest.raises(ValueError, match=r"importance has \[4, 4\] heads"):
        plan_pruning(model, random_importance(layers=2), target_sparsity=0.5)
    with pytest.raises(ValueError, match="keep at least one"):
        apply_plan(model, StructuredPlan([[0], [], [0]], [[0], [0], [0]]))


def test_pruned_student_recovers_by_distillation_from_the_unpruned_teacher(model, tokenizer, tmp_path):
    student = apply_plan(model, plan_pruning(model, random_importance(), target_sparsity=0.5)).train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in model.state_dict().items()}
    config = DistillationTrainingConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                        report_to=[], use_cpu=True, bf16=False, save_strategy="no")  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher_model=model, args=config,
                                  train_dataset=tiny_dataset(tokenizer, n=8), processing_class=tokenizer)  # fmt: skip
    trainer.train()
    after = trainer.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(teacher_before[k], v) for k, v in model.state_dict().items())
