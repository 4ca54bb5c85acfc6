"""Each loss against an independent reference written from the formula (plain Python/NumPy, no torch losses)."""

import math

import numpy as np
import pytest
import torch

from bertdistill import (
    cosine_embedding_loss,
    get_loss,
    hard_label_loss,
    logit_mse,
    pkd_hidden_distance,
    register_loss,
    soft_target_kl,
)


def softmax(row, temperature):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def reference_kd(student, teacher, temperature):
    """Hinton et al. 2015: T^2 * mean_i sum_c p_T(c) * (log p_T(c) - log p_S(c)), with p = softmax(z / T)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row, temperature), softmax(t_row, temperature)
        total += sum(pt * (math.log(pt) - math.log(ps)) for ps, pt in zip(p_s, p_t))
    return temperature**2 * total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5])
def test_soft_target_kl_matches_the_formula(temperature):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(5, 3)) * 3, rng.normal(size=(5, 3)) * 3
    got = soft_target_kl(torch.tensor(student), torch.tensor(teacher), temperature)
    assert got.item() == pytest.approx(reference_kd(student, teacher, temperature), rel=1e-5)


def test_soft_target_kl_is_zero_for_equal_logits_and_has_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    assert soft_target_kl(logits, logits.detach(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    soft_target_kl(logits, torch.randn(4, 3), 2.0).backward()
    assert logits.grad.abs().sum() > 0


def test_logit_mse_and_hard_label_loss_match_the_formula():
    student = np.array([[0.5], [1.5], [-2.0]])
    teacher = np.array([[1.0], [1.0], [0.0]])
    assert logit_mse(torch.tensor(student), torch.tensor(teacher)).item() == pytest.approx((0.25 + 0.25 + 4) / 3)
    # Regression (one output): squared error against the float target.
    assert hard_label_loss(torch.tensor(student), torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(4.5 / 3)
    # Classification: -log softmax(z)[y], averaged.
    logits = [[2.0, 0.0, -1.0], [0.1, 0.2, 0.3]]
    labels = [0, 2]
    expected = -sum(math.log(softmax(row, 1.0)[y]) for row, y in zip(logits, labels)) / 2
    assert hard_label_loss(torch.tensor(logits), torch.tensor(labels)).item() == pytest.approx(expected, rel=1e-6)


def test_registry():
    assert get_loss("kl") is soft_target_kl
    with pytest.raises(ValueError, match="Registered losses: attention_kl, attention_mse, cosine, hard"):
        get_loss("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_loss("kl", soft_target_kl)


def test_pkd_distance_matches_the_formula():
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)) * 5
    expected = [
        sum((s / math.sqrt(sum(v * v for v in s_row)) - t / math.sqrt(sum(v * v for v in t_row))) ** 2
            for s, t in zip(s_row, t_row))
        for s_row, t_row in zip(student.tolist(), teacher.tolist())
    ]  # fmt: skip
    got = pkd_hidden_distance(torch.tensor(student), torch.tensor(teacher))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # Scale-free: multiplying a vector does not change the distance.
    torch.testing.assert_close(pkd_hidden_distance(torch.tensor(student) * 7, torch.tensor(teacher)), got)


def test_cosine_loss_matches_the_formula_over_unpadded_tokens():
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    per_sequence = []
    for b in range(2):
        terms = []
        for i in range(3):
            if mask[b, i]:
                s, t = student[b, i], teacher[b, i]
                terms.append(1 - float(s @ t) / math.sqrt(float(s @ s) * float(t @ t)))
        per_sequence.append(sum(terms) / len(terms))
    got = cosine_embedding_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(mask))
    # The padding policy: each sequence's mean over its real tokens, then the mean over sequences.
    assert got.item() == pytest.approx(sum(per_sequence) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="equal widths"):
        cosine_embedding_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, 8))


def test_token_losses_ignore_padding_and_split_over_accumulation_steps():
    """Padding policy: extra padding changes nothing, and a batch's loss is the mean of its halves' losses."""
    from bertdistill.losses import attention_kl, attention_mse, hidden_mse

    rng = np.random.default_rng(7)
    lengths = [5, 2, 3, 4]
    mask = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    hidden = [torch.tensor(rng.normal(size=(4, 5, 6))) for _ in range(2)]
    scores = [torch.tensor(rng.normal(size=(4, 2, 5, 5))) for _ in range(2)]
    for loss, (s, t) in ((hidden_mse, hidden), (cosine_embedding_loss, hidden), (attention_mse, scores),
                         (attention_kl, scores)):  # fmt: skip
        whole = loss(s, t, mask)
        halves = (loss(s[:2], t[:2], mask[:2]) + loss(s[2:], t[2:], mask[2:])) / 2
        torch.testing.assert_close(whole, halves)
        # Two more padded positions, filled with noise, must not count.
        pad = (0, 0, 0, 2) if s.dim() == 3 else (0, 2, 0, 2)
        noisy = [torch.nn.functional.pad(x, pad, value=3.0) for x in (s, t)]
        wider = torch.nn.functional.pad(mask, (0, 2))
        torch.testing.assert_close(loss(*noisy, wider), whole)


def test_pkd_mse_is_the_authors_mean_over_examples_and_hidden_size():
    from bertdistill.losses import pkd_cls_mse

    rng = np.random.default_rng(8)
    student, teacher = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)) * 4
    total = 0.0
    for b in range(3):
        s, t = student[b, 0], teacher[b, 0]
        s, t = s / math.sqrt(float(s @ s)), t / math.sqrt(float(t @ t))
        total += sum((x - y) ** 2 for x, y in zip(s, t))
    got = pkd_cls_mse(torch.tensor(student), torch.tensor(teacher))
    assert got.item() == pytest.approx(total / (3 * 5), rel=1e-6)
    # The paper's squared L2 norm is the hidden size times this.
    paper = pkd_hidden_distance(torch.tensor(student[:, 0]), torch.tensor(teacher[:, 0])).mean()
    assert paper.item() == pytest.approx(5 * got.item(), rel=1e-6)


def test_match_loss_registry_is_per_feature():
    from bertdistill.losses import attention_kl, get_match_loss, hidden_mse, register_match_loss

    assert get_match_loss("mse", "hidden").fn is hidden_mse
    assert get_match_loss("kl", "attention").fn is attention_kl
    with pytest.raises(ValueError, match=r"Unknown loss 'cosine' for attention matches \('cosine' reads hidden "):
        get_match_loss("cosine", "attention")
    with pytest.raises(ValueError, match="Unknown loss 'rkd' for attention matches.*Valid: at, kl, mse"):
        get_match_loss("rkd", "attention")
    with pytest.raises(ValueError, match="already registered for hidden"):
        register_match_loss("mse", "hidden", hidden_mse)
    with pytest.raises(ValueError, match="Unknown feature"):
        register_match_loss("new", "logits", hidden_mse)


def test_masked_kl_and_mlm_loss_use_the_masked_positions_only():
    rng = np.random.default_rng(3)
    student, teacher = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    labels = np.array([[-100, 4, -100], [0, -100, -100]])
    rows = [(0, 1), (1, 0)]
    expected_kd = reference_kd([student[r] for r in rows], [teacher[r] for r in rows], 2.0)
    mask = torch.tensor(labels != -100)
    got = soft_target_kl(torch.tensor(student), torch.tensor(teacher), 2.0, mask=mask)
    assert got.item() == pytest.approx(expected_kd, rel=1e-5)
    expected_mlm = -sum(math.log(softmax(student[r].tolist(), 1.0)[labels[r]]) for r in rows) / 2
    assert hard_label_loss(torch.tensor(student), torch.tensor(labels)).item() == pytest.approx(expected_mlm, rel=1e-5)


def test_tinybert_prediction_loss_is_soft_cross_entropy_without_t_squared():
    from bertdistill.losses import soft_cross_entropy

    rng = np.random.default_rng(4)
    student, teacher = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    t = 2.0
    expected = (
        -sum(
            sum(pt * math.log(ps) for pt, ps in zip(softmax(t_row, t), softmax(s_row, t)))
            for s_row, t_row in zip(student.tolist(), teacher.tolist())
        )
        / 3
    )
    got = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher), t)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_tinybert_hidden_and_attention_mse_match_the_formula():
    from bertdistill.losses import attention_kl, attention_mse, hidden_mse

    rng = np.random.default_rng(5)
    s, t = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    assert hidden_mse(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(((s - t) ** 2).mean())
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    per_sequence = [((s[0, :2] - t[0, :2]) ** 2).mean(), ((s[1, :1] - t[1, :1]) ** 2).mean()]
    masked = hidden_mse(torch.tensor(s), torch.tensor(t), torch.tensor(mask)).item()
    assert masked == pytest.approx(np.mean(per_sequence))
    a_s, a_t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    per_head = [((a_s[:, h] - a_t[:, h]) ** 2).mean() for h in range(3)]
    assert attention_mse(torch.tensor(a_s), torch.tensor(a_t)).item() == pytest.approx(sum(per_head) / 3)
    with pytest.raises(ValueError, match="same number of heads"):
        attention_mse(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3))

    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    # Masked MSE: each sequence's squared error over its real (query, key) pairs and heads, then the mean.
    per_sequence = []
    for b in range(2):
        n = int(mask[b].sum())
        per_sequence.append(((a_s[b, :, :n, :n] - a_t[b, :, :n, :n]) ** 2).mean())
    got = attention_mse(torch.tensor(a_s), torch.tensor(a_t), torch.tensor(mask))
    assert got.item() == pytest.approx(np.mean(per_sequence), rel=1e-6)

    per_sequence = []
    for b in range(2):
        n, total = int(mask[b].sum()), 0.0
        for h in range(3):
            for q in range(n):
                p_t, p_s = softmax(a_t[b, h, q, :n].tolist(), 1.0), softmax(a_s[b, h, q, :n].tolist(), 1.0)
                total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        per_sequence.append(total / (3 * n))
    got = attention_kl(torch.tensor(a_s), torch.tensor(a_t), torch.tensor(mask))
    assert got.item() == pytest.approx(np.mean(per_sequence), rel=1e-5)
