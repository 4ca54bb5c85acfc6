"""Low-rank factorization: full rank is exact, a lower rank is the truncated SVD (Eckart-Young error), energy picks
the hand-computed rank, the checkpoint loads without bertdistill, the factors train, bad input is refused."""

import subprocess
import sys

import pytest
import torch

from bertdistill import DistillationTrainer, DistillationTrainingConfig
from bertdistill.benchmark import count_parameters
from bertdistill.compression.importance import Importance
from bertdistill.compression.low_rank import _rank_for_energy, factorization_report, factorize
from bertdistill.compression.pruning import apply_plan, plan_pruning

from conftest import make_teacher
from test_trainer import tiny_dataset

INPUTS = {"input_ids": torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]]),
          "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}  # fmt: skip


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_teacher(tokenizer, layers=2, dropout=0.0).eval()  # hidden 32, FFN 64


def logits(model):
    with torch.no_grad():
        return model(**INPUTS).logits


def test_full_rank_is_exact(model):
    full = factorize(model, rank=32, embedding_rank=32, keep_dense_if_larger=False)
    assert len(full.config.ranks) == 2 * 6 + 1
    torch.testing.assert_close(logits(full), logits(model), atol=1e-4, rtol=1e-4)


def test_lower_rank_is_the_truncated_svd(model):
    factorized = factorize(model, rank=4)
    dense = model.bert.encoder.layer[1].intermediate.dense.weight.detach().double()
    low = factorized.bert.encoder.layer[1].intermediate.dense
    product = (low.up.weight @ low.down.weight).detach().double()
    u, s, vh = torch.linalg.svd(dense)  # the reference: truncate the full SVD by hand
    torch.testing.assert_close(product, u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-5, rtol=1e-5)
    assert torch.linalg.norm(dense - product) == pytest.approx(s[4:].pow(2).sum().sqrt().item(), rel=1e-4)
    # Balanced factors: both carry sqrt(S).
    torch.testing.assert_close(low.down.weight.norm(dim=1).double(), s[:4].sqrt(), atol=1e-5, rtol=1e-5)
    biases = 4 * 32 + 64 + 32  # Q, K, V, attention output; FFN in; FFN out
    per_layer = 4 * 4 * (32 + 32) + 2 * 4 * (32 + 64) + biases  # rank-4 factors
    dense_layer = 4 * 32 * 32 + 2 * 32 * 64 + biases
    assert count_parameters(model) - count_parameters(factorized) == 2 * (dense_layer - per_layer)
    report = factorization_report(factorized)
    assert {row["rank"] for row in report} == {4} and len(report) == 12
    assert all(0 < row["kept_energy"] < 1 and row["parameters"] < row["dense_parameters"] for row in report)


def test_energy_picks_the_hand_computed_rank():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1: cumulative shares 16/22, 20/22, 21/22, 1
    assert [_rank_for_energy(s, e) for e in (0.5, 16 / 22, 0.8, 0.95, 1.0)] == [1, 1, 2, 3, 4]
    q1, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
    q2, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    weight = q1[:, :4] @ torch.diag(s) @ q2[:4]
    _, found, _ = torch.linalg.svd(weight)
    assert _rank_for_energy(found[:4], 0.9) == 2


def test_dense_kept_where_factors_would_be_larger(model):
    factorized = factorize(model, energy=1.0)  # full energy: every rank is the full one, nothing gets smaller
    assert factorized.config.ranks == {} and count_parameters(factorized) == count_parameters(model)


def test_checkpoint_loads_without_bertdistill(model, tmp_path):
    factorized = factorize(model, rank=4, embedding_rank=8)
    factorized.save_pretrained(tmp_path / "low")
    code = f"""
import sys, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "low")!r}, trust_remote_code=True)
assert not any(m.startswith("bertdistill") for m in sys.modules)
torch.save(model.eval()(**{INPUTS!r}).logits, {str(tmp_path / "out.pt")!r})
""".replace("tensor(", "torch.tensor(")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), logits(factorized))
    from transformers import AutoModelForSequenceClassification

    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "low")
    torch.testing.assert_close(logits(again.eval()), logits(factorized))


def test_a_pruned_model_factorizes(model):
    importance = Importance(torch.rand(2, 4), torch.rand(2, 64))
    pruned = apply_plan(model, plan_pruning(model, importance, heads_per_layer=[2, 3], neurons_per_layer=[16, 40]))
    factorized = factorize(pruned, rank=2, keep_dense_if_larger=False)
    assert factorized.config.heads_per_layer == [2, 3]
    assert logits(factorized).shape == (2, 2)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="exactly one of rank and energy"):
        factorize(model)
    with pytest.raises(ValueError, match="exactly one of rank and energy"):
        factorize(model, rank=2, energy=0.5)
    with pytest.raises(ValueError, match=r"rank 40 is outside \[1, 32\] for encoder.layer.0.attention.self.query"):
        factorize(model, rank=40)
    with pytest.raises(ValueError, match=r"rank 0 is outside"):
        factorize(model, rank=0)
    with pytest.raises(ValueError, match=r"energy must be in \(0, 1\]"):
        factorize(model, energy=1.5)
    with pytest.raises(ValueError, match=r"embedding_rank must be in \[1, 32\]"):
        factorize(model, rank=2, embedding_rank=33)
    with pytest.raises(ValueError, match="takes a BertForSequenceClassification, got BertModel"):
        factorize(model.bert, rank=2)
    with pytest.raises(ValueError, match="factorized already"):
        factorize(factorize(model, rank=2), rank=2)


def test_factors_train_by_distillation(model, tokenizer, tmp_path):
    student = factorize(model, rank=4).train()
    before = student.bert.encoder.layer[0].intermediate.dense.down.weight.clone()
    config = DistillationTrainingConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                        report_to=[], use_cpu=True, bf16=False, save_strategy="no")  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher_model=model, args=config,
                                  train_dataset=tiny_dataset(tokenizer, n=8), processing_class=tokenizer)  # fmt: skip
    trainer.train()
    assert not torch.equal(trainer.student.bert.encoder.layer[0].intermediate.dense.down.weight, before)
