"""Multi-teacher KD: the teachers' weights (mean, fixed, CA-MKD confidence) and the mixed-target loss against
hand-computed values, the trainer with live and cached teachers, the CLI with two teachers, and the errors."""

import json
import math

import pytest
import torch

from bertdistill import MultiTeacherConfig, MultiTeacherTrainer, build_student
from bertdistill.losses import multi_teacher_kd, teacher_weights
from bertdistill.teacher_ensemble import TeacherEnsemble

from conftest import make_teacher, save_with_tokenizer
from test_trainer import state, tiny_dataset

# two rows, three classes, two teachers
LOGITS = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], [[0.5, 0.5, 3.0], [1.0, -2.0, 0.0]]])
LABELS = torch.tensor([0, 2])


def test_teacher_weights_by_hand():
    assert torch.equal(teacher_weights(LOGITS, None, "mean"), torch.full((2, 2), 0.5))
    torch.testing.assert_close(teacher_weights(LOGITS, None, "fixed", [3.0, 1.0]), torch.tensor([[0.75, 0.25]] * 2))
    # CA-MKD: L_k = teacher k's CE on the label; w_k = (1 - exp(L_k) / sum_j exp(L_j)) / (K - 1)
    expected = []
    for row, label in enumerate(LABELS.tolist()):
        losses = [-(LOGITS[row, k, label] - torch.logsumexp(LOGITS[row, k], 0)).item() for k in range(2)]
        total = sum(math.exp(v) for v in losses)
        expected.append([(1 - math.exp(v) / total) / 1 for v in losses])
    weights = teacher_weights(LOGITS, LABELS, "confidence")
    torch.testing.assert_close(weights, torch.tensor(expected))
    assert weights[0, 0] > weights[0, 1] and weights[1, 0] > weights[1, 1]  # the teacher nearer the label
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    # regression: squared errors instead of CE
    scores = torch.tensor([[[1.0], [3.0]]])
    w = teacher_weights(scores, torch.tensor([1.5]), "confidence")
    e = [math.exp(0.25), math.exp(2.25)]
    torch.testing.assert_close(w, torch.tensor([[1 - e[0] / sum(e), 1 - e[1] / sum(e)]]))


def test_mixed_target_kd_by_hand():
    student = torch.tensor([[0.2, 0.1, 0.0], [0.0, 0.3, 1.0]])
    weights = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    t = 2.0
    total = 0.0
    for row in range(2):
        mix = [sum(weights[row, k] * torch.softmax(LOGITS[row, k] / t, 0)[c] for k in range(2)) for c in range(3)]
        q = torch.softmax(student[row] / t, 0)
        total += sum(m * (torch.log(m) - torch.log(q[c])) for c, m in enumerate(mix))
    torch.testing.assert_close(multi_teacher_kd(student, LOGITS, weights, t), t**2 * total / 2)
    # with one teacher at weight 1 it is plain KD
    from bertdistill.losses import soft_target_kl

    torch.testing.assert_close(
        multi_teacher_kd(student, LOGITS[:, :1], torch.ones(2, 1), t), soft_target_kl(student, LOGITS[:, 0], t)
    )
    regression = multi_teacher_kd(torch.tensor([[1.0]]), torch.tensor([[[0.0], [4.0]]]), torch.tensor([[0.75, 0.25]]))
    torch.testing.assert_close(regression, torch.tensor(0.0))


def multi_trainer(tmp_path, tokenizer, teachers, **config):
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
        max_steps=4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3, use_cpu=True,
        bf16=False, train_sampling_strategy="random",
    )  # fmt: skip
    torch.manual_seed(1)
    student = build_student(teachers[0], num_layers=2)
    data = tiny_dataset(tokenizer, n=16)
    args = MultiTeacherConfig(**{**defaults, **config})
    return MultiTeacherTrainer(model=student, teacher_model=teachers, args=args, train_dataset=data,
                               eval_dataset=data, processing_class=tokenizer)  # fmt: skip


@pytest.mark.parametrize("weighting, weights", [("mean", None), ("fixed", "3,1"), ("confidence", None)])
def test_trainer_loss_is_kd_against_the_mixture(tmp_path, tokenizer, weighting, weights):
    teachers = [make_teacher(tokenizer, dropout=0.0, seed=s) for s in (0, 7)]
    trainer = multi_trainer(tmp_path, tokenizer, teachers, teacher_weighting=weighting, teacher_weights=weights,
                            cache_teacher_logits=False, temperature=2.0)  # fmt: skip
    wrapper = trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    loss, outputs = trainer.compute_loss(wrapper, dict(batch), return_outputs=True)
    plain = {k: v for k, v in batch.items() if k != "labels"}
    stacked = torch.stack([t.eval()(**plain).logits for t in teachers], 1)
    w = teacher_weights(stacked, batch["labels"], weighting, [3.0, 1.0] if weights else None)
    expected = multi_teacher_kd(wrapper.student(**plain).logits, stacked, w, 2.0)
    torch.testing.assert_close(outputs.loss_components["kd"], expected, rtol=1e-4, atol=1e-6)


def test_trainer_caches_the_stacked_teacher_logits_and_trains(tmp_path, tokenizer):
    teachers = [make_teacher(tokenizer, seed=s) for s in (0, 7)]
    calls = []
    for t in teachers:
        t.register_forward_hook(lambda *_: calls.append(1))
    trainer = multi_trainer(tmp_path, tokenizer, teachers, cache_teacher_logits=None)
    assert trainer.speed_levers["cache_teacher_logits"].value
    assert len(trainer.train_dataset[0]["teacher_logits"]) == 2  # K rows of C logits per example
    before_calls, before = len(calls), state(trainer.student)
    teacher_before = state(teachers[1])
    trainer.train()
    assert len(calls) == before_calls  # training read the cache, never the teachers
    assert any(not torch.equal(v, before[k]) for k, v in state(trainer.student).items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in state(teachers[1]).items())
    trainer.create_model_card(task_name="rte", metrics={"eval_accuracy": 0.5})
    assert "| teacher_weighting | mean |" in (tmp_path / "README.md").read_text()


def test_multi_teacher_errors(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="different label sets"):
        TeacherEnsemble([make_teacher(tokenizer), make_teacher(tokenizer, num_labels=3)])
    with pytest.raises(ValueError, match="at least 2 teachers"):
        TeacherEnsemble([make_teacher(tokenizer)])
    with pytest.raises(ValueError, match="teacher_weights goes with"):
        MultiTeacherConfig(str(tmp_path), teacher_weights="1,2")
    with pytest.raises(ValueError, match="must be >= 0 and not all 0"):
        MultiTeacherConfig(str(tmp_path), teacher_weighting="fixed", teacher_weights="0,0")
    with pytest.raises(ValueError, match="2 weights for 3 teachers"):
        multi_trainer(tmp_path, tokenizer, [make_teacher(tokenizer, seed=s) for s in range(3)],
                      teacher_weighting="fixed", teacher_weights="1,2")  # fmt: skip
    with pytest.raises(ValueError, match="takes a list of at least 2 teachers"):
        MultiTeacherTrainer(model=make_teacher(tokenizer), teacher_model=make_teacher(tokenizer),
                            args=MultiTeacherConfig(str(tmp_path)))  # fmt: skip


def test_distill_glue_with_two_teachers(tokenizer, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    paths = [str(save_with_tokenizer(make_teacher(tokenizer, seed=s), tokenizer, tmp_path / f"t{s}")) for s in (0, 7)]
    common = [
        "--task_name",
        "rte",
        "--glue_dir",
        str(glue_dir),
        "--max_train_samples",
        "24",
        "--max_eval_samples",
        "16",
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "3",
        "--logging_steps",
        "1",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--student_num_layers",
        "2",
    ]
    metrics = distill_glue.main(
        [
            *common,
            "--method",
            "multi_teacher",
            "--teacher_model_name_or_path",
            *paths,
            "--teacher_weighting",
            "confidence",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert "eval_accuracy" in metrics
    assert "loss_kd" in json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"][0]
    with pytest.raises(ValueError, match="takes one teacher, got 2"):
        distill_glue.main(
            [*common, "--method", "kd", "--teacher_model_name_or_path", *paths, "--output_dir", str(tmp_path / "kd")]
        )
    with pytest.raises(ValueError, match="needs at least 2 teachers"):
        distill_glue.main(
            [
                *common,
                "--method",
                "multi_teacher",
                "--teacher_model_name_or_path",
                paths[0],
                "--output_dir",
                str(tmp_path / "one"),
            ]
        )


@pytest.fixture
def char_tokenizer(tmp_path):
    """Another tokenizer: characters only (no whole words), so the same text gets other ids and lengths."""
    import string

    from transformers import BertTokenizerFast

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(tmp_path / "char")
    return tokenizer


def test_teacher_with_its_own_tokenizer_reads_only_its_encoding(tmp_path, tokenizer, char_tokenizer):
    """A two-tokenizer batch carries both encodings; the second teacher reads its own, the student never sees it."""
    import datasets

    from bertdistill.glue_run import tokenize_split
    from glue_tasks import get_task

    texts = ["the movie was good", "a bad film", "it is not good at all", "good"]
    raw = datasets.Dataset.from_dict({"sentence": texts, "label": [1, 0, 0, 1], "idx": list(range(4))})
    data = tokenize_split(raw, get_task("sst2"), tokenizer, 64, teacher_tokenizers={"teacher1_": char_tokenizer})
    assert data[0]["teacher1_input_ids"] == char_tokenizer(texts[0])["input_ids"] != data[0]["input_ids"]
    torch.manual_seed(0)
    teacher_a = make_teacher(tokenizer, dropout=0.0)
    teacher_b = make_teacher(char_tokenizer, dropout=0.0, seed=3)
    seen = {"student": [], "b": []}
    torch.manual_seed(1)
    student = build_student(teacher_a, num_layers=2)
    student.register_forward_pre_hook(lambda m, a, kw: seen["student"].append(kw), with_kwargs=True)
    teacher_b.register_forward_pre_hook(lambda m, a, kw: seen["b"].append(kw), with_kwargs=True)
    args = MultiTeacherConfig(str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[], use_cpu=True,
                              bf16=False, train_sampling_strategy="random", cache_teacher_logits=False,
                              disable_tqdm=True, save_strategy="no")  # fmt: skip
    trainer = MultiTeacherTrainer(model=student, teacher_model=[teacher_a, teacher_b], args=args,
                                  teacher_tokenizers=[None, char_tokenizer], train_dataset=data,
                                  processing_class=tokenizer)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert {"input_ids", "teacher1_input_ids", "teacher1_attention_mask"} <= set(batch)
    assert batch["input_ids"].shape != batch["teacher1_input_ids"].shape  # padded each with its own tokenizer
    wrapper = trainer.model.train()
    _, outputs = trainer.compute_loss(wrapper, dict(batch), return_outputs=True)
    assert seen["student"] and not any(k.startswith("teacher1_") for kw in seen["student"] for k in kw)
    assert torch.equal(seen["student"][-1]["input_ids"], batch["input_ids"])
    assert torch.equal(seen["b"][-1]["input_ids"], batch["teacher1_input_ids"])
    plain = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    own = {k.removeprefix("teacher1_"): v for k, v in batch.items() if k.startswith("teacher1_")}
    stacked = torch.stack([teacher_a.eval()(**plain).logits, teacher_b.eval()(**own).logits], 1)
    expected = multi_teacher_kd(wrapper.student(**plain).logits, stacked, torch.full((4, 2), 0.5), args.temperature)
    torch.testing.assert_close(outputs.loss_components["kd"], expected, rtol=1e-4, atol=1e-6)
    # the cached logits are computed from each teacher's own encoding, then the encodings leave the training set
    cached = MultiTeacherTrainer(
        model=build_student(teacher_a, num_layers=2), teacher_model=[teacher_a, teacher_b],
        args=args.replaced(cache_teacher_logits=True), teacher_tokenizers=[None, char_tokenizer], train_dataset=data,
        processing_class=tokenizer,
    )  # fmt: skip
    assert "teacher1_input_ids" not in cached.train_dataset.column_names
    for row in range(4):  # in the dataset's order, one row at a time (no padding)
        one = trainer.data_collator([data[row]])
        own = {k.removeprefix("teacher1_"): v for k, v in one.items() if k.startswith("teacher1_")}
        logits = [teacher_a(**{k: one[k] for k in plain}).logits[0], teacher_b(**own).logits[0]]
        torch.testing.assert_close(torch.tensor(cached.train_dataset[row]["teacher_logits"]),
                                   torch.stack(logits).detach(), rtol=1e-4, atol=1e-5)  # fmt: skip
    cached.train()
    with pytest.raises(ValueError, match="vocabularies differ"):
        TeacherEnsemble([teacher_a, teacher_b])  # without saying that b reads its own tokens


def test_distill_glue_teacher_with_another_tokenizer(tokenizer, char_tokenizer, glue_dir, tmp_path):
    from conftest import load_script

    distill_glue = load_script("distill_glue")
    a = save_with_tokenizer(make_teacher(tokenizer), tokenizer, tmp_path / "a")
    b = save_with_tokenizer(make_teacher(char_tokenizer, seed=3), char_tokenizer, tmp_path / "b")
    metrics = distill_glue.main(
        [
            "--task_name",
            "rte",
            "--glue_dir",
            str(glue_dir),
            "--max_train_samples",
            "24",
            "--max_eval_samples",
            "16",
            "--max_seq_length",
            "64",
            "--per_device_train_batch_size",
            "4",
            "--max_steps",
            "2",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--student_num_layers",
            "2",
            "--method",
            "multi_teacher",
            "--teacher_model_name_or_path",
            str(a),
            str(b),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    assert "eval_accuracy" in metrics


def test_teachers_check_commands_and_report(tmp_path, glue_dir):
    """check_teachers.py: each run's teachers (both for multi-teacher), data-free's generated rows per epoch, and the
    report from result files: intervals against finetune and against the better single-teacher KD."""
    from bertdistill.results import ResultStore
    from glue_tasks import get_task, load_glue_split

    from conftest import load_script

    check = load_script("checks/check_teachers")
    check.compare_feature_losses.BOOTSTRAP_RESAMPLES = 200
    args = check.parse(["--glue_dir", str(glue_dir)])
    mrpc, stsb = get_task("mrpc"), get_task("stsb")
    teachers = {"a": tmp_path / "ta", "b": tmp_path / "tb"}
    commands = {run: check.run_command(mrpc, run, "1", args, teachers, tmp_path / run) for run in check.RUNS}
    after = {run: c[c.index("--teacher_model_name_or_path") + 1 : c.index("--student_layers")]
             for run, c in commands.items()}  # fmt: skip
    assert after["multi-mean"] == [str(teachers["a"]), str(teachers["b"])] and after["kd-b"] == [str(teachers["b"])]
    rows = commands["data_free"][commands["data_free"].index("--dafl_rows_per_epoch") + 1]
    assert rows == str(len(load_glue_split("mrpc", "train", glue_dir)))
    vocab = commands["data_free-vocab"]  # the same budget, generated rows in the teacher's word-embedding space
    assert vocab[vocab.index("--dafl_output") + 1] == "vocab"
    assert vocab[vocab.index("--dafl_rows_per_epoch") + 1] == rows
    assert check.applies(mrpc, "data_free-vocab") and not check.applies(stsb, "data_free-vocab")
    assert check.applies(stsb, "data_free-reference")
    reference = commands["data_free-reference"]
    assert reference[reference.index("--dafl_reductions") + 1] == "reference"
    start = commands["start"]  # the built student, not trained: the last --num_train_epochs wins in argparse
    assert start[len(start) - start[::-1].index("--num_train_epochs")] == "0" and "finetune" in start
    stsb_command = check.run_command(stsb, "data_free", "1", args, teachers, tmp_path / "df")
    stsb_rows = stsb_command[stsb_command.index("--dafl_rows_per_epoch") + 1]
    assert stsb_rows == str(len(load_glue_split("stsb", "train", glue_dir)))  # regression runs data-free too

    labels = list(load_glue_split("mrpc", "validation", glue_dir)["label"])
    flipped = [1 - y for y in labels]
    store = ResultStore(tmp_path / "results")

    def record(predictions, score):
        return {"metric": "f1", "score": score, "dev_predictions": predictions, "wall_time_s": 1, "machine": "test"}

    store.save("mrpc", "teacher-a", "42", {"metric": "f1", "score": 0.85})
    for seed in ("1", "2"):
        store.save("mrpc", "finetune", seed, record(flipped, 0.1))
        store.save("mrpc", "kd-a", seed, record(labels[:100] + flipped[100:], 0.3))
        store.save("mrpc", "kd-b", seed, record(labels[:200] + flipped[200:], 0.5))
        store.save("mrpc", "multi-mean", seed, record(labels, 0.9))
        store.save("mrpc", "start", seed, record(flipped, 0.1))
    report = tmp_path / "report.md"
    summaries = check.main(["--tasks", "mrpc", "--seeds", "1", "2", "--glue_dir", str(glue_dir), "--results_dir",
                            str(tmp_path / "results"), "--report", str(report), "--report_only"])  # fmt: skip
    assert summaries[0]["best_single"] == "kd-b" and summaries[0]["teachers"] == {"a": 0.85}
    rows = {r["run"]: r for r in summaries[0]["rows"]}
    assert rows["multi-mean"]["vs_best_single"]["low"] > 0 and rows["kd-a"]["vs_best_single"]["high"] < 0
    text = report.read_text()
    assert "vs the better single teacher (kd-b)" in text and "teacher a 0.8500" in text
    assert "![every run against finetune" in text and report.with_suffix(".png").stat().st_size > 1000
    assert rows["multi-mean"]["vs_start"]["low"] > 0 and rows["start"]["vs_start"] is None
    assert "vs start (not trained)" in text
    majority = max(labels.count(0), labels.count(1)) / len(labels)  # multi-mean answers the labels themselves
    assert rows["multi-mean"]["accuracy"] == 1.0 and rows["finetune"]["accuracy"] == 0.0
    assert rows["multi-mean"]["top_answer_share"] == pytest.approx(majority)
    assert f"| multi-mean | 1,2 | 1.0000 | 0.0000 | 1.0000 | {majority:.0%} |" in text  # F1 rescored: 1
    assert "- mrpc: 10 of 20 runs (seeds 1, 2)" in text  # multi-confidence, gan_kd, 3 data_free runs x 2 seeds
