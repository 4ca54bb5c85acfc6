"""Patient-KD, DistilBERT and the no-teacher baseline inside the Trainer: wiring of layers, logging, errors."""

import numpy as np
import pytest
import torch

from bertdistill import DistilBertConfig, PatientKDConfig, PatientKDTrainer, build_student

from conftest import make_teacher, tiny_config
from test_trainer import make_trainer, state


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
    # The authors' reduction (default): F.mse_loss over the stacked normalised [CLS] vectors.
    s = np.stack([student.hidden_states[s_layer][:, 0].numpy() for s_layer, _ in pairs], axis=1)
    t = np.stack([teacher.hidden_states[t_layer][:, 0].numpy() for _, t_layer in pairs], axis=1)
    assert got["pt"].item() == pytest.approx(float(((normalised(s) - normalised(t)) ** 2).mean()), rel=1e-4)


def test_pkd_reductions_follow_the_authors_code_and_the_paper(tmp_path, tokenizer):
    """Three mapped layers with different distances: the reductions differ by the hidden size and the layer count."""
    teacher = make_teacher(tokenizer, layers=4, dropout=0.0)
    values = {}
    for reduction in ("mse", "sum", "mean"):
        torch.manual_seed(5)
        student = build_student(teacher, config=tiny_config(len(tokenizer), layers=3, dropout=0.0))
        trainer = make_trainer(tmp_path / reduction, tokenizer, teacher=teacher, student=student, method="pkd",
                               layer_map="1:1,2:2,3:4", pt_reduction=reduction)  # fmt: skip
        batch = one_batch(trainer)
        values[reduction], student_out, teacher_out = components(trainer, batch)
    squared = [
        ((normalised(student_out.hidden_states[s][:, 0].numpy()) - normalised(teacher_out.hidden_states[t][:, 0]
          .numpy())) ** 2).sum(-1)
        for s, t in ((1, 1), (2, 2), (3, 4))
    ]  # fmt: skip
    hidden = teacher.config.hidden_size
    per_example_sum = np.sum(squared, axis=0)  # the paper: sum over layers of ||u_S - u_T||^2
    assert values["sum"]["pt"].item() == pytest.approx(float(per_example_sum.mean()), rel=1e-4)
    assert values["mean"]["pt"].item() == pytest.approx(float(per_example_sum.mean()) / 3, rel=1e-4)
    assert values["mse"]["pt"].item() == pytest.approx(float(per_example_sum.mean()) / (3 * hidden), rel=1e-4)
    assert len({round(v["pt"].item(), 6) for v in values.values()}) == 3


def test_pkd_init_takes_the_first_layers(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, layers=4, dropout=0.0)
    student = build_student(teacher, num_layers=3, selection="first")
    trainer = make_trainer(tmp_path, tokenizer, teacher=teacher, student=student, method="pkd", layer_map="1:1,2:2")
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
    # The padding policy: each sequence's mean over its real tokens, then over sequences.
    expected = np.mean([(1 - cos[b])[mask[b]].mean() for b in range(len(mask))])
    # cos is close to 1 (the student starts from teacher layers), so 1 - cos in float32 keeps ~3 digits.
    assert got["cos"].item() == pytest.approx(float(expected), rel=2e-3)
    assert got["cos"].item() != pytest.approx(float((1 - cos).mean()), rel=2e-2), "padding must not count"
    trainer.train()
    assert all("loss_cos" in log for log in trainer.state.log_history if "loss" in log)


def test_layer_match_loss_and_proj_fields_are_honoured(tmp_path, tokenizer):
    """A JSON map's `loss`, `weight` and `proj` change what PKD and DistilBERT compute."""
    spec = '[{"teacher_layer": 2, "student_layer": 1, "loss": "cosine", "weight": 2.0, "proj": true}]'
    trainer = make_trainer(tmp_path, tokenizer, method="pkd", layer_map=spec, dropout=0.0)
    assert set(trainer.model.extras) == {"proj_1_2"}
    batch = one_batch(trainer)
    got, student, teacher = components(trainer, batch)
    projected = trainer.model.extras["proj_1_2"](student.hidden_states[1]).detach().double().numpy()
    cos = (normalised(projected) * normalised(teacher.hidden_states[2].double().numpy())).sum(-1)
    mask = batch["attention_mask"].numpy().astype(bool)
    expected = 2.0 * np.mean([(1 - cos[b])[mask[b]].mean() for b in range(len(mask))])
    assert got["pt"].item() == pytest.approx(float(expected), rel=1e-4)

    spec = '[{"teacher_layer": 4, "student_layer": 2, "loss": "mse"}]'
    trainer = make_trainer(tmp_path, tokenizer, method="distilbert", layer_map=spec, dropout=0.0)
    batch = one_batch(trainer)
    mask = batch["attention_mask"].numpy().astype(bool)
    got, student, teacher = components(trainer, batch)
    s, t = student.hidden_states[2].double().numpy(), teacher.hidden_states[4].double().numpy()
    expected = np.mean([((s[b] - t[b]) ** 2).mean(-1)[mask[b]].mean() for b in range(len(mask))])
    assert got["cos"].item() == pytest.approx(float(expected), rel=1e-4)


def test_a_narrow_student_is_compared_through_projections(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer)
    narrow = tiny_config(len(tokenizer), layers=2)
    narrow.hidden_size, narrow.num_attention_heads = 16, 2
    trainer = make_trainer(tmp_path, tokenizer, teacher=teacher, student=build_student(teacher, config=narrow),
                           method="pkd", max_steps=2)  # fmt: skip
    assert set(trainer.model.extras) == {"proj_1_2"}
    before = state(trainer.model.extras)
    trainer.train()
    assert not torch.equal(before["proj_1_2.weight"], state(trainer.model.extras)["proj_1_2.weight"])


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
    with pytest.raises(
        ValueError,
        match=r"Unknown loss 'kl' for hidden matches \('kl' reads attention matches\). Valid: at, at_norm, cc, cosine",
    ):
        make_trainer(tmp_path, tokenizer, method="pkd", layer_map='[{"teacher_layer": 2, "student_layer": 1, '
                     '"loss": "kl"}]')  # fmt: skip
    with pytest.raises(ValueError, match="matches hidden states only"):
        make_trainer(tmp_path, tokenizer, method="distilbert", layer_map='[{"teacher_layer": 2, "student_layer": 1, '
                     '"feature": "attention"}]')  # fmt: skip
    with pytest.raises(ValueError, match="student_layer 3 is out of range"):
        make_trainer(tmp_path, tokenizer, method="pkd", layer_map="3:4")
    with pytest.raises(TypeError, match="PatientKDTrainer needs a PatientKDConfig"):
        PatientKDTrainer(model=build_student(teacher, num_layers=2), teacher_model=teacher,
                         args=DistilBertConfig(output_dir=str(tmp_path)))  # fmt: skip
