"""TinyBERT inside the Trainer: narrow students with projections, recorded attention scores, stages, resume."""

import copy
import json

import pytest
import torch
from test_attention import reference_scores
from test_methods import one_batch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from conftest import make_teacher, tiny_config
from test_trainer import assert_resumes_like, make_trainer, state


def sequence_mse(a, b, mask):
    """Reference of the padding policy: each sequence's squared error over its real tokens, then the mean."""
    return torch.stack([((a[i, : int(n)] - b[i, : int(n)]) ** 2).mean() for i, n in enumerate(mask.sum(1))]).mean()


def attention_sequence_mse(a, b, mask):
    """The same over each sequence's real (query, key) pairs and heads."""
    lengths = [int(n) for n in mask.sum(1)]
    return torch.stack([((a[i, :, :n, :n] - b[i, :, :n, :n]) ** 2).mean() for i, n in enumerate(lengths)]).mean()


def narrow_student(tokenizer, heads=4):
    config = tiny_config(len(tokenizer), layers=2, dropout=0.0)
    config.hidden_size, config.num_attention_heads, config.intermediate_size = 16, heads, 32
    torch.manual_seed(2)
    return BertForSequenceClassification(config)


def test_intermediate_losses_match_references_through_projections(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, layers=4, dropout=0.0)
    eager_teacher = copy.deepcopy(teacher)
    trainer = make_trainer(tmp_path, tokenizer, teacher=teacher, student=narrow_student(tokenizer), method="tinybert")
    assert set(trainer.model.extras) == {"proj"}
    batch = one_batch(trainer)
    wrapper = trainer.model
    wrapper.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        t = trainer.teacher(**inputs, output_hidden_states=True, output_attentions=True)
        out = wrapper(**batch, teacher_outputs=t, distill=True)
        ref_t = eager_teacher(**inputs, output_hidden_states=True)
        s = trainer.student(**inputs, output_hidden_states=True)
    proj = wrapper.extras["proj"]
    mask = batch["attention_mask"]
    # Uniform 4 -> 2: embeddings 0<-0, hidden 1<-2 and 2<-4, attention 1<-2 and 2<-4.
    assert int(mask.sum()) < mask.numel(), "the batch must have padding for this test to see it"
    expected_emb = sequence_mse(proj(s.hidden_states[0]), ref_t.hidden_states[0], mask)
    expected_hidden = sum(sequence_mse(proj(s.hidden_states[m]), ref_t.hidden_states[2 * m], mask) for m in (1, 2))
    torch.testing.assert_close(out.loss_components["emb"], expected_emb, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.loss_components["hidden"], expected_hidden, rtol=1e-4, atol=1e-6)
    student_ref = copy.deepcopy(trainer.student)
    student_ref.set_attn_implementation("eager")
    expected_attn = 0.0
    for m in (1, 2):
        scores_t = reference_scores(eager_teacher.bert, ref_t.hidden_states[2 * m - 1], 2 * m, mask)
        scores_s = reference_scores(student_ref.bert, s.hidden_states[m - 1], m, mask)
        expected_attn = expected_attn + attention_sequence_mse(scores_s, scores_t, mask)
    torch.testing.assert_close(out.loss_components["attn"], expected_attn, rtol=1e-4, atol=1e-6)


def test_training_moves_projections_and_the_student_loads_plainly(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path / "out", tokenizer, student=narrow_student(tokenizer), method="tinybert",
                           shared_projection=False, max_steps=3, save_strategy="steps", save_steps=3)  # fmt: skip
    assert set(trainer.model.extras) == {"proj_0_0", "proj_1_2", "proj_2_4"}
    before = state(trainer.model.extras)
    trainer.train()
    assert all(not torch.equal(v, state(trainer.model.extras)[k]) for k, v in before.items())
    logged = [log for log in trainer.state.log_history if "loss" in log]
    assert {"loss_emb", "loss_hidden", "loss_attn"} <= set(logged[0]) and "loss_pred" not in logged[0]
    assert (tmp_path / "out" / "checkpoint-3" / "distillation_extras.safetensors").is_file()
    trainer.save_model()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert loaded.config.hidden_size == 16 and loaded.config._attn_implementation != "bertdistill_scores"


def test_prediction_stage_uses_only_the_soft_loss(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="tinybert", stage="prediction", max_steps=2)
    assert len(trainer.model.extras) == 0
    trainer.train()
    logged = [log for log in trainer.state.log_history if "loss" in log]
    assert all(set(log) & {"loss_pred", "loss_emb", "loss_hidden", "loss_attn"} == {"loss_pred"} for log in logged)
    assert trainer.student.config._attn_implementation != "bertdistill_scores"


def test_kl_attention_loss_matches_a_reference(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, layers=4, dropout=0.0)
    eager_teacher = copy.deepcopy(teacher)
    trainer = make_trainer(tmp_path, tokenizer, teacher=teacher, method="tinybert", attention_loss="kl",
                           dropout=0.0)  # fmt: skip
    batch = one_batch(trainer)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trainer.model.train()
    with torch.no_grad():
        t = trainer.teacher(**inputs, output_hidden_states=True, output_attentions=True)
        out = trainer.model(**batch, teacher_outputs=t, distill=True)
        ref_t = eager_teacher(**inputs, output_hidden_states=True)
        s = trainer.student(**inputs, output_hidden_states=True)
    student_ref = copy.deepcopy(trainer.student)
    student_ref.set_attn_implementation("eager")
    mask = batch["attention_mask"]
    expected = 0.0
    for m in (1, 2):  # uniform 4 -> 2: attention 1 <- 2, 2 <- 4
        scores_t = reference_scores(eager_teacher.bert, ref_t.hidden_states[2 * m - 1], 2 * m, mask)
        scores_s = reference_scores(student_ref.bert, s.hidden_states[m - 1], m, mask)
        per_sequence = []
        for i, n in enumerate(int(n) for n in mask.sum(1)):
            p_t = scores_t[i, :, :n, :n].softmax(-1)
            log_p_s = scores_s[i, :, :n, :n].log_softmax(-1)
            per_sequence.append((p_t * (p_t.log() - log_p_s)).sum(-1).mean())
        expected = expected + torch.stack(per_sequence).mean()
    torch.testing.assert_close(out.loss_components["attn"], expected, rtol=1e-4, atol=1e-7)
    assert out.loss_components["attn"].item() > 0


def test_head_mismatch_and_stage_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="the teacher has 4 heads and the student 2"):
        make_trainer(tmp_path, tokenizer, student=narrow_student(tokenizer, heads=2), method="tinybert")
    trainer = make_trainer(tmp_path, tokenizer, student=narrow_student(tokenizer, heads=2), method="tinybert",
                           alpha_attn=0.0, max_steps=1)  # fmt: skip
    trainer.train()
    with pytest.raises(ValueError, match="runs one stage .* run the configs of args.split_stages"):
        make_trainer(tmp_path, tokenizer, method="tinybert", stage="both")
    with pytest.raises(ValueError, match="stage must be one of"):
        make_trainer(tmp_path, tokenizer, method="tinybert", stage="all")


def test_a_map_with_student_layer_0_keeps_its_attention_matches(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, method="tinybert", layer_map="0:0,1:2,2:4")
    attention = [(m.student_layer, m.teacher_layer) for m in trainer.layer_map if m.feature == "attention"]
    assert attention == [(1, 2), (2, 4)]
    assert trainer.model.teacher_attention_layers == (2, 4)
    explicit = (
        '[{"teacher_layer": 4, "student_layer": 2, "feature": "attention"}, {"teacher_layer": 2, "student_layer": 1}]'
    )
    trainer = make_trainer(tmp_path, tokenizer, method="tinybert", layer_map=explicit)
    assert [(m.feature, m.student_layer, m.teacher_layer) for m in trainer.layer_map] == [
        ("hidden", 0, 0), ("hidden", 1, 2), ("attention", 2, 4)]  # fmt: skip


def test_prediction_stage_after_intermediate_records_no_scores(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, layers=4)
    first = make_trainer(tmp_path / "a", tokenizer, teacher=teacher, method="tinybert", max_steps=1)
    assert teacher.config._attn_implementation == "bertdistill_scores"
    first.train()
    make_trainer(tmp_path / "b", tokenizer, teacher=teacher, student=first.student, method="tinybert",
                 stage="prediction")  # fmt: skip
    assert teacher.config._attn_implementation == "sdpa"
    assert first.student.config._attn_implementation == "sdpa"


def test_prediction_stage_regression_target(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, num_labels=1, dropout=0.0)
    for target in ("teacher", "gold"):
        trainer = make_trainer(tmp_path / target, tokenizer, teacher=teacher, method="tinybert", num_labels=1,
                               stage="prediction", regression_target=target, dropout=0.0)  # fmt: skip
        batch = one_batch(trainer)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        trainer.model.train()
        with torch.no_grad():
            out = trainer.model(**batch, teacher_outputs=trainer.teacher(**inputs), distill=True)
            student = trainer.student(**inputs).logits.squeeze(-1)
            reference = trainer.teacher(**inputs).logits.squeeze(-1) if target == "teacher" else batch["labels"]
        torch.testing.assert_close(out.loss_components["pred"], torch.mean((student - reference.float()) ** 2))
    assert trainer.model.needs_teacher is False  # gold scores only: the teacher is not run


def test_a_checkpoint_with_projections_resumes_to_the_same_weights(tmp_path, tokenizer):
    teacher = make_teacher(tokenizer, dropout=0.0)
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, method="tinybert")

    def student():
        return narrow_student(tokenizer)

    full = make_trainer(tmp_path / "full", tokenizer, teacher=teacher, student=student(), **common)
    full.train()

    def make(folder, **config):
        return make_trainer(folder, tokenizer, teacher=teacher, student=student(), **common, **config)

    assert_resumes_like(full, make, tmp_path, 2)


def test_distill_glue_tinybert_both_stages_with_a_narrow_student(teacher_dir, glue_dir, tmp_path):
    from test_scripts import distill_args, distill_glue

    out = tmp_path / "tiny"
    narrow = ["--student_num_layers", "2", "--student_hidden_size", "16", "--student_intermediate_size", "32"]
    argv = distill_args(teacher_dir, glue_dir, out, "rte", "--method", "tinybert", "--stage", "both", *narrow,
                        "--intermediate_learning_rate", "1e-3", "--logging_steps", "1")  # fmt: skip
    metrics = distill_glue.main(argv)
    assert "eval_accuracy" in metrics
    intermediate = tmp_path / "tiny-intermediate"
    first = json.loads((intermediate / "trainer_state.json").read_text())["log_history"]
    second = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert "loss_attn" in first[0] and "loss_pred" not in first[0]
    assert "loss_pred" in second[0] and "loss_attn" not in second[0]
    assert (intermediate / "distillation_extras.safetensors").is_file()
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert (student.config.hidden_size, student.config.num_hidden_layers) == (16, 2)
    with pytest.raises(ValueError, match="not a multiple of its 4 attention heads"):
        distill_glue.main(distill_args(teacher_dir, glue_dir, tmp_path / "bad", "rte", "--method", "tinybert",
                                       "--student_num_layers", "2", "--student_hidden_size", "18"))  # fmt: skip
