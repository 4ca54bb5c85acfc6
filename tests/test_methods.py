"""Patient-KD, DistilBERT and the no-teacher baseline inside the Trainer: wiring of layers, logging, errors."""

import numpy as np
import pytest
import torch

from bertdistill import DistilBertConfig, PatientKDConfig, PatientKDTrainer, build_student

from conftest import make_teacher, tiny_config
from test_trainer import make_trainer


def one_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v for k, v in batch.items()}


def components(trainer, batch):
    """Loss components of one training forward, computed by the trainer's own wrapper."""
    wrapper = trainer.model
    wrapper.train()
    with torch.no_grad():
        teacher = trainer.teacher(
            **{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True, output_attentions=False
        )
        out = wrapper(**batch, teacher_outputs=teacher, distill=True)
        student = trainer.student(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    return out.loss_components, student, teacher


def normalised(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("layer_map, pairs", [("pkd-skip", [(1, 2)]), ("pkd-last", [(1, 3)])])
def test_pkd_patient_loss_uses_the_mapped_cls_vectors(tmp_path, tokenizer, layer_map, pairs):
    # 4-layer teacher, 2-layer student: skip maps student 1 <- teacher 2, last maps student 1 <- teacher 3.
    trainer = make_trainer(tmp_path, tokenizer, method="pkd", layer_map=layer_map, dropout=0.0, beta=10.0)
    got, student, teacher = components(trainer, one_batch(trainer))
    expected = 0.0
    for s_layer, t_layer in pairs:
        s = student.hidden_states[s_layer][:, 0].numpy()
        t = teacher.hidden_states[t_layer][:, 0].numpy()
        expected = expected + ((normalised(s) - normalised(t)) ** 2).sum(-1)
    assert got["pt"].item() == pytest.approx(float(np.mean(expected)), rel=1e-4)


def test_pkd_trains_and_logs_every_component(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="pkd", alpha=0.7, beta=5.0, max_steps=3)
    assert (trainer.args.alpha_kd, trainer.args.alpha_ce) == (0.7, pytest.approx(0.3))
    trainer.train()
    for log in [log for log in trainer.state.log_history if "loss" in log]:
        total = 0.3 * log["loss_ce"] + 0.7 * log["loss_kd"] + 5.0 * log["loss_pt"]
        assert log["loss"] == pytest.approx(total, rel=1e-3, abs=1e-3)


def test_pkd_init_takes_the_first_layers_and_mean_reduction(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, layers=4, dropout=0.0)
    student = build_student(teacher, num_layers=3, selection="first")
    trainer = make_trainer(tmp_path, tokenizer, teacher=teacher, student=student, method="pkd",
                           layer_map="1:1,2:2", pt_reduction="mean")  # fmt: skip
    got, *_ = components(trainer, one_batch(trainer))
    # Student layers 1 and 2 are copies of teacher layers 1 and 2 and no step has been taken: zero distance.
    assert got["pt"].item() == pytest.approx(0.0, abs=1e-6)


def test_distilbert_cosine_loss_on_the_last_hidden_states(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="distilbert", dropout=0.0)
    batch = one_batch(trainer)
    got, student, teacher = components(trainer, batch)
    s, t = student.hidden_states[2].double().numpy(), teacher.hidden_states[4].double().numpy()
    mask = batch["attention_mask"].numpy().astype(bool)
    cos = (normalised(s) * normalised(t)).sum(-1)
    # cos is close to 1 (the student starts from teacher layers), so 1 - cos in float32 keeps ~3 digits.
    assert got["cos"].item() == pytest.approx(float((1 - cos)[mask].mean()), rel=2e-3)
    assert got["cos"].item() != pytest.approx(float((1 - cos).mean()), rel=2e-2), "padding must not count"
    trainer.train()
    assert all("loss_cos" in log for log in trainer.state.log_history if "loss" in log)


def test_finetune_baseline_never_runs_the_teacher(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="finetune", max_steps=2)

    def fail(*args, **kwargs):
        raise AssertionError("the baseline ran the teacher")

    trainer.teacher.forward = fail
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert logs and all(log["loss"] == pytest.approx(log["loss_ce"], rel=1e-4) for log in logs)


def test_method_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="alpha must be in"):
        PatientKDConfig(output_dir=str(tmp_path), alpha=1.5)
    with pytest.raises(ValueError, match="pt_reduction"):
        PatientKDConfig(output_dir=str(tmp_path), pt_reduction="max")
    with pytest.raises(ValueError, match="alpha_cos must be >= 0"):
        DistilBertConfig(output_dir=str(tmp_path), alpha_cos=-1)
    teacher = make_teacher(tokenizer)
    narrow = tiny_config(len(tokenizer), layers=2)
    narrow.hidden_size, narrow.num_attention_heads = 16, 2
    with pytest.raises(ValueError, match="needs the teacher's hidden size"):
        make_trainer(tmp_path, tokenizer, teacher=teacher, student=build_student(teacher, config=narrow), method="pkd")
    with pytest.raises(ValueError, match="student_layer 3 is out of range"):
        make_trainer(tmp_path, tokenizer, method="pkd", layer_map="3:4")
    with pytest.raises(TypeError, match="PatientKDTrainer needs a PatientKDConfig"):
        PatientKDTrainer(model=build_student(teacher, num_layers=2), teacher_model=teacher,
                         args=DistilBertConfig(output_dir=str(tmp_path)))  # fmt: skip
