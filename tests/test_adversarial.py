"""GAN-KD: the discriminator's and the student's adversarial losses against their formulas, each training its own
player only, the trainer (discriminator trained, checkpointed and resumed in the extras; logits or [CLS] vectors)
and the errors."""

import functools
import math

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill import GANKDConfig
from bertdistill.adversarial import Discriminator, discriminator_loss, generator_loss

from conftest import make_teacher, tiny_config
from test_trainer import assert_resumes_like, make_trainer, state


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_adversarial_losses_follow_their_formulas_and_train_one_player_each():
    torch.manual_seed(0)
    disc = Discriminator(3, 3, hidden_size=8, spectral=False)
    teacher = torch.randn(4, 3)
    student = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        real = disc(teacher, labels).tolist()
        fake = disc(student, labels).tolist()
    expected_d = sum(bce(r, 0.9) for r in real) / 4 + sum(bce(f, 0.0) for f in fake) / 4
    expected_g = sum(bce(f, 1.0) for f in fake) / 4
    d_loss = discriminator_loss(disc, teacher, student, labels, real_target=0.9)
    g_loss = generator_loss(disc, student, labels)
    assert d_loss.item() == pytest.approx(expected_d, rel=1e-5)
    assert g_loss.item() == pytest.approx(expected_g, rel=1e-5)
    g_loss.backward(retain_graph=True)
    assert student.grad is not None and all(p.grad is None for p in disc.parameters())
    student.grad = None
    d_loss.backward()
    assert student.grad is None and all(p.grad is not None for p in disc.parameters())
    # the condition is the one-hot label: the same logits judged under another label score differently
    assert not torch.allclose(disc(teacher, labels), disc(teacher, torch.tensor([1, 0, 2, 0])))
    assert Discriminator(1, 1).condition(torch.tensor([0.5, 2.0]), 2, "cpu").tolist() == [[0.5], [2.0]]


def test_spectral_norm_keeps_the_discriminator_lipschitz():
    torch.manual_seed(0)
    disc = Discriminator(3, 0, hidden_size=16, spectral=True)
    with torch.no_grad():
        for layer in disc.net:
            if hasattr(layer, "parametrizations"):
                layer.parametrizations.weight.original.mul_(100)
        for _ in range(20):  # power iterations in training mode
            disc(torch.randn(8, 3))
        disc.eval()
        for layer in disc.net:
            if hasattr(layer, "parametrizations"):
                assert torch.linalg.matrix_norm(layer.weight, ord=2) == pytest.approx(1.0, abs=0.05)


def narrow(tokenizer):
    config = tiny_config(len(tokenizer), layers=2)
    config.hidden_size, config.intermediate_size = 16, 24
    torch.manual_seed(2)
    return BertForSequenceClassification(config)


@pytest.mark.parametrize("feature", ["logits", "cls"])
def test_gan_kd_trains_the_student_and_the_discriminator(tmp_path, tokenizer, feature):
    student = narrow(tokenizer) if feature == "cls" else None
    trainer = make_trainer(tmp_path, tokenizer, student=student, method="gan_kd", adv_feature=feature)
    extras = trainer.model.extras
    assert ("adv_projection" in extras) == (feature == "cls")
    before = {k: v.clone() for k, v in extras.state_dict().items()}
    student_before = state(trainer.student)
    teacher_before = state(trainer.teacher)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert all({"loss_ce", "loss_kd", "loss_adv", "loss_disc"} <= set(row) for row in logged)
    moved = [k for k, v in extras.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("discriminator.") for k in moved)
    if feature == "cls":
        assert any(k.startswith("adv_projection.") for k in moved)
    assert any(not torch.equal(v, student_before[k]) for k, v in state(trainer.student).items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in state(trainer.teacher).items())


def test_gan_kd_resumes_with_its_discriminator(tmp_path, tokenizer):
    common = dict(max_steps=6, save_strategy="steps", save_steps=3, method="gan_kd")
    teacher = make_teacher(tokenizer)
    make = functools.partial(make_trainer, tokenizer=tokenizer, teacher=teacher, **common)
    full = make(tmp_path / "full")
    full.train()
    assert_resumes_like(full, make, tmp_path, 3)


def test_gan_kd_errors(tmp_path):
    with pytest.raises(ValueError, match="adv_feature must be one of"):
        GANKDConfig(str(tmp_path), adv_feature="attention")
    with pytest.raises(ValueError, match="disc_real_target must be in"):
        GANKDConfig(str(tmp_path), disc_real_target=0.3)
    with pytest.raises(ValueError, match="adv_weight must be >= 0"):
        GANKDConfig(str(tmp_path), adv_weight=-1.0)
