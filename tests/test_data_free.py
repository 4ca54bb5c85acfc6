"""Data-free distillation (DAFL in embedding space): the generator's three losses against the paper's formulas, the
generated rows (framing, output spaces), the trainer (the student never receives a dataset row, each loss trains its
own player, the generator's own learning rate, resume), the CLI and the errors."""

import functools
import math

import pytest
import torch
from transformers import BertForSequenceClassification

from bertdistill import DataFreeConfig, DataFreeTrainer, build_student
from bertdistill.data_free import (
    EmbeddingGenerator,
    activation_loss,
    information_entropy_loss,
    one_hot_loss,
    range_loss,
    spread_loss,
)

from conftest import make_teacher, save_with_tokenizer, tiny_config
from test_trainer import assert_resumes_like, state, tiny_dataset


def test_generator_losses_follow_the_paper():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [1.0, 1.0]])
    expected_oh = 0.0
    for row in logits:
        c = int(row.argmax())
        expected_oh += -(row[c] - torch.logsumexp(row, 0)).item() / 3
    assert one_hot_loss(logits).item() == pytest.approx(expected_oh, rel=1e-6)
    features = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    assert activation_loss(features).item() == pytest.approx(-(3.0 + 1.0) / 2)
    mean = torch.softmax(logits, -1).mean(0)
    assert information_entropy_loss(logits).item() == pytest.approx(float((mean * mean.log()).sum()), rel=1e-6)
    # balanced predictions over the batch have the lowest information-entropy loss: -log(classes)
    balanced = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    assert information_entropy_loss(balanced).item() == pytest.approx(-math.log(2), abs=1e-3)


def test_reference_reductions_follow_the_authors_code():
    """`"reference"`: the authors' DAFL_train.py, `-features.abs().mean()` and `(p * log10(p)).sum()`, written out
    element by element."""
    features = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -3.0]])
    assert activation_loss(features, "reference").item() == pytest.approx(-(1 + 2 + 0 + 0.5 + 0.5 + 3) / 6)
    assert activation_loss(features).item() == pytest.approx(-(3.0 + 4.0) / 2)  # the paper's: H = 3 times larger
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    rows = [[math.exp(v) for v in row] for row in logits.tolist()]
    mean = [(rows[0][k] / sum(rows[0]) + rows[1][k] / sum(rows[1])) / 2 for k in range(3)]
    expected = sum(m * math.log10(m) for m in mean)
    assert information_entropy_loss(logits, "reference").item() == pytest.approx(expected, rel=1e-6)
    assert information_entropy_loss(logits).item() == pytest.approx(expected * math.log(10), rel=1e-6)
    even = torch.linspace(0.25, 4.75, 10)
    assert spread_loss(even, 0.0, 5.0, reduction="reference").item() == pytest.approx(
        spread_loss(even, 0.0, 5.0).item() / math.log(10), rel=1e-6
    )
    for loss in (activation_loss, information_entropy_loss):
        with pytest.raises(ValueError, match="paper, reference"):
            loss(features, "mean")
    with pytest.raises(ValueError, match="dafl_reductions must be one of paper, reference"):
        DataFreeConfig(output_dir="unused", dafl_reductions="code")


def test_regression_counterparts_follow_their_formulas():
    # range: squared distance outside [0, 5] in units of the range; -1 and 6 are each 1 outside, 2 is inside
    predictions = torch.tensor([[-1.0], [2.0], [6.0]])
    assert range_loss(predictions, 0.0, 5.0).item() == pytest.approx((1 + 0 + 1) / 3 / 25)
    assert range_loss(torch.tensor([0.0, 2.5, 5.0]), 0.0, 5.0).item() == 0.0
    # spread: written out by hand, bins of width 1 centred at 0.5 ... 4.5
    values, centres = [0.2, 0.9, 4.0], [0.5 + k for k in range(5)]
    histogram = [0.0] * 5
    for y in values:
        weights = [math.exp(-((y - c) ** 2) / 2) for c in centres]
        for k, w in enumerate(weights):
            histogram[k] += w / sum(weights) / len(values)
    expected = sum(m * math.log(m) for m in histogram)
    assert spread_loss(torch.tensor(values), 0.0, 5.0, bins=5).item() == pytest.approx(expected, rel=1e-6)
    # predictions covering the range score lower (better) than predictions piled on one value
    even = torch.linspace(0.25, 4.75, 10)
    assert spread_loss(even, 0.0, 5.0) < spread_loss(torch.full((10,), 2.5), 0.0, 5.0)
    assert spread_loss(even, 0.0, 5.0).item() == pytest.approx(-math.log(10), abs=5e-3)
    with pytest.raises(ValueError, match="at least 2 bins"):
        spread_loss(even, 0.0, 5.0, bins=1)


@pytest.mark.parametrize("output", ["free", "vocab"])
def test_generated_rows_are_framed_and_stay_near_real_embeddings(output):
    torch.manual_seed(0)
    table = torch.randn(20, 8)
    generator = EmbeddingGenerator(table, cls_id=2, sep_id=3, length=6, output=output, noise_size=4, hidden_size=16)
    generated = generator(generator.noise(5, "cpu"))
    embeds = generator.embed(generated, table)
    assert embeds.shape == (5, 6, 8)
    assert torch.equal(embeds[:, 0], table[2].expand(5, -1)) and torch.equal(embeds[:, -1], table[3].expand(5, -1))
    if output == "free":
        low, high = table.mean(0) - 3 * table.std(0), table.mean(0) + 3 * table.std(0)
        assert ((embeds[:, 1:-1] >= low - 1e-5) & (embeds[:, 1:-1] <= high + 1e-5)).all()
    else:  # convex mixtures of the table's rows; the same weights mix any other table (a narrower student's)
        torch.testing.assert_close(generated.sum(-1), torch.ones(5, 4))
        narrow = torch.randn(20, 4)
        torch.testing.assert_close(generator.embed(generated, narrow)[:, 1:-1], generated @ narrow)


def data_free_trainer(tmp_path, tokenizer, student=None, teacher=None, callbacks=None, **config):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, dafl_length=8, dafl_rows_per_epoch=16,
    )  # fmt: skip
    teacher = teacher if teacher is not None else make_teacher(tokenizer, dropout=0.0)
    torch.manual_seed(1)
    student = student if student is not None else build_student(teacher, num_layers=2)
    return DataFreeTrainer(model=student, teacher_model=teacher, args=DataFreeConfig(**{**defaults, **config}),
                           eval_dataset=tiny_dataset(tokenizer), processing_class=tokenizer,
                           callbacks=callbacks)  # fmt: skip


def test_the_student_only_ever_reads_generated_embeddings(tmp_path, tokenizer):
    trainer = data_free_trainer(tmp_path, tokenizer, learning_rate=5e-4)
    calls = []
    trainer.student.register_forward_pre_hook(lambda m, a, kw: calls.append(kw), with_kwargs=True)
    generator_before = {k: v.clone() for k, v in trainer.model.extras.state_dict().items()}
    student_before, teacher_before = state(trainer.student), state(trainer.teacher)
    trainer.train()
    assert len(calls) == 4
    for kw in calls:  # never a token id: nothing of any dataset
        assert kw.get("input_ids") is None and kw["inputs_embeds"].shape == (4, 8, 32)
        assert kw["attention_mask"].all()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert all({"loss_oh", "loss_act", "loss_ie", "loss_kd"} <= set(row) for row in logged)
    assert any(not torch.equal(v, generator_before[k]) for k, v in trainer.model.extras.state_dict().items())
    assert any(not torch.equal(v, student_before[k]) for k, v in state(trainer.student).items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in state(trainer.teacher).items())
    groups = trainer.optimizer.param_groups
    generator_params = {id(p) for p in trainer.model.extras["generator"].parameters()}
    own = [i for i, g in enumerate(groups) if {id(p) for p in g["params"]} & generator_params]
    assert len(own) == 1 and all({id(p) for p in groups[i]["params"]} <= generator_params for i in own)
    base = trainer.lr_scheduler.base_lrs
    assert base[own[0]] == 1e-3 and all(lr == 5e-4 for i, lr in enumerate(base) if i != own[0])
    assert "eval_loss" in trainer.evaluate()  # evaluation reads the real dev rows


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_each_loss_trains_its_own_player(tmp_path, tokenizer, regression):
    if regression:
        teacher = make_teacher(tokenizer, num_labels=1, dropout=0.0)
        trainer = data_free_trainer(tmp_path, tokenizer, teacher=teacher, dafl_target_range=[0, 5])
        generator_terms = ("range", "act", "spread")
    else:
        trainer = data_free_trainer(tmp_path, tokenizer)
        generator_terms = ("oh", "act", "ie")
    wrapper = trainer.model.train()
    outputs = wrapper(generated_row=torch.arange(4), distill=True)
    assert set(outputs.loss_components) == {*generator_terms, "kd"}
    generator = list(wrapper.extras["generator"].parameters())
    student = [p for p in wrapper.student.parameters() if p.requires_grad]
    checked = {name: outputs for name in generator_terms}
    if regression:  # the tiny teacher answers inside [0, 5]: a range far from its answers gives range a gradient
        wrapper.target_range = (10.0, 15.0, 10)
        checked["range"] = wrapper(generated_row=torch.arange(4), distill=True)
    for name, out in checked.items():
        g = torch.autograd.grad(out.loss_components[name], generator + student, allow_unused=True, retain_graph=True)
        assert any(x is not None and x.any() for x in g[: len(generator)]), name
        assert all(x is None or not x.any() for x in g[len(generator) :]), name
    g = torch.autograd.grad(outputs.loss_components["kd"], generator + student, allow_unused=True)
    assert all(x is None or not x.any() for x in g[: len(generator)])
    assert any(x is not None and x.any() for x in g[len(generator) :])


def test_dafl_reductions_reach_the_generator_losses(tmp_path, tokenizer):
    """The same generated batch (same seeds) under both reductions: the activation term H times smaller, the
    entropy term in log10, the one-hot and KD terms unchanged."""
    components = {}
    for reduction in ("paper", "reference"):
        trainer = data_free_trainer(tmp_path / reduction, tokenizer, dafl_reductions=reduction)
        assert trainer.hyperparameters()["dafl_reductions"] == reduction
        torch.manual_seed(5)
        outputs = trainer.model.train()(generated_row=torch.arange(4), distill=True)
        components[reduction] = {k: v.item() for k, v in outputs.loss_components.items()}
    paper, reference = components["paper"], components["reference"]
    hidden = trainer.teacher.config.hidden_size
    assert reference["act"] == pytest.approx(paper["act"] / hidden, rel=1e-5)
    assert reference["ie"] == pytest.approx(paper["ie"] / math.log(10), rel=1e-5)
    assert reference["oh"] == pytest.approx(paper["oh"], rel=1e-6) and reference["kd"] == pytest.approx(paper["kd"])


def test_vocab_space_serves_a_narrower_student_and_resume(tmp_path, tokenizer):
    config = tiny_config(len(tokenizer), layers=2)
    config.hidden_size, config.intermediate_size = 16, 24
    with pytest.raises(ValueError, match="use dafl_output='vocab'"):
        data_free_trainer(tmp_path, tokenizer, student=BertForSequenceClassification(config))
    torch.manual_seed(2)
    trainer = data_free_trainer(tmp_path / "vocab", tokenizer, student=BertForSequenceClassification(config),
                                dafl_output="vocab")  # fmt: skip
    trainer.train()
    assert all(torch.isfinite(torch.tensor(r["loss_kd"])) for r in trainer.state.log_history if "loss" in r)
    common = dict(max_steps=6, save_strategy="steps", save_steps=3)
    teacher = make_teacher(tokenizer, dropout=0.0)
    make = functools.partial(data_free_trainer, tokenizer=tokenizer, teacher=teacher, **common)
    full = make(tmp_path / "full")
    full.train()
    assert_resumes_like(full, make, tmp_path, 3, rtol=1e-4, atol=1e-5)


def test_data_free_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="alpha_ce must be 0"):
        DataFreeConfig(str(tmp_path), alpha_ce=0.5)
    with pytest.raises(ValueError, match="never reads training rows"):
        teacher = make_teacher(tokenizer)
        DataFreeTrainer(model=build_student(teacher, num_layers=2), teacher_model=teacher,
                        args=DataFreeConfig(str(tmp_path)), train_dataset=tiny_dataset(tokenizer),
                        processing_class=tokenizer)  # fmt: skip
    with pytest.raises(ValueError, match="dafl_target_range low high"):
        data_free_trainer(tmp_path, tokenizer, teacher=make_teacher(tokenizer, num_labels=1))
    with pytest.raises(ValueError, match="is for a regression teacher"):
        data_free_trainer(tmp_path, tokenizer, dafl_target_range=[0, 5])
    with pytest.raises(ValueError, match="distills from a teacher: give teacher_model"):
        regression_args = DataFreeConfig(str(tmp_path), dafl_target_range=[0, 5])
        DataFreeTrainer(model=make_teacher(tokenizer), teacher_model=None, args=regression_args,
                        processing_class=tokenizer)  # fmt: skip
    for bad in ([5, 0], [1], [0, 1, 2]):
        with pytest.raises(ValueError, match="low < high"):
            DataFreeConfig(str(tmp_path), dafl_target_range=bad)
    with pytest.raises(ValueError, match="dafl_bins must be >= 2"):
        DataFreeConfig(str(tmp_path), dafl_bins=1)
    with pytest.raises(ValueError, match="pass the teacher's tokenizer"):
        teacher = make_teacher(tokenizer)
        DataFreeTrainer(model=build_student(teacher, num_layers=2), teacher_model=teacher,
                        args=DataFreeConfig(str(tmp_path)))  # fmt: skip


def test_distill_glue_data_free(teacher_dir, glue_dir, tmp_path):
    import json

    from conftest import load_script

    distill_glue = load_script("distill_glue")
    out = tmp_path / "df"
    metrics = distill_glue.main([
        "--task_name", "rte", "--glue_dir", str(glue_dir), "--max_eval_samples", "16", "--max_train_samples", "8",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1",
        "--report_to", "none", "--disable_tqdm", "true", "--method", "data_free", "--teacher_model_name_or_path",
        str(teacher_dir), "--student_num_layers", "2", "--dafl_length", "12", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_accuracy" in metrics
    assert "loss_ie" in json.loads((out / "trainer_state.json").read_text())["log_history"][0]


def test_distill_glue_data_free_regression_takes_the_task_range(tokenizer, glue_dir, tmp_path):
    import json

    from conftest import load_script

    distill_glue = load_script("distill_glue")
    teacher = save_with_tokenizer(make_teacher(tokenizer, num_labels=1), tokenizer, tmp_path / "teacher")
    out = tmp_path / "df"
    metrics = distill_glue.main([
        "--task_name", "stsb", "--glue_dir", str(glue_dir), "--max_eval_samples", "16", "--max_seq_length", "32",
        "--per_device_train_batch_size", "4", "--max_steps", "3", "--logging_steps", "1", "--report_to", "none",
        "--disable_tqdm", "true", "--method", "data_free", "--teacher_model_name_or_path", str(teacher),
        "--student_num_layers", "2", "--dafl_length", "12", "--output_dir", str(out),
    ])  # fmt: skip
    assert "eval_pearson" in metrics
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"][0]
    assert {"loss_range", "loss_spread", "loss_kd"} <= set(logged) and "loss_ie" not in logged
