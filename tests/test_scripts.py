"""distill_glue.py and finetune_teacher.py on real GLUE rows with tiny models, and every input error they catch."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, BertModel

from conftest import load_script, make_teacher, tiny_config

distill_glue = load_script("distill_glue")
finetune_teacher = load_script("finetune_teacher")

FAST = [
    "--max_train_samples",
    "24",
    "--max_eval_samples",
    "16",
    "--max_seq_length",
    "32",
    "--max_steps",
    "3",
    "--per_device_train_batch_size",
    "8",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--use_cpu",
    "true",
]


def distill_args(teacher, glue_dir, out, task="rte", *extra):
    return [
        "--task_name",
        task,
        "--teacher_model_name_or_path",
        str(teacher),
        "--glue_dir",
        str(glue_dir),
        "--output_dir",
        str(out),
        *FAST,
        *extra,
    ]


def test_distill_glue_writes_student_metrics_and_card(teacher_dir, glue_dir, tmp_path):
    out = tmp_path / "student"
    metrics = distill_glue.main(distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "2"))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_accuracy"] == pytest.approx(metrics["eval_accuracy"]) and results["eval_samples"] == 16
    assert "model-index" in (out / "README.md").read_text()
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.finetuning_task == "rte"


def test_regression_task_end_to_end(tokenizer, glue_dir, tmp_path):
    teacher = make_teacher(tokenizer, num_labels=1)
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    metrics = distill_glue.main(
        distill_args(tmp_path / "teacher", glue_dir, tmp_path / "out", "stsb", "--student_layers", "0,3")
    )
    assert {"eval_pearson", "eval_spearmanr", "eval_combined_score"} <= set(metrics)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_single_config_file_argument(teacher_dir, glue_dir, tmp_path, suffix):
    out = tmp_path / "student"
    options = {
        "method": "kd",
        "task_name": "wnli",
        "teacher_model_name_or_path": str(teacher_dir),
        "glue_dir": str(glue_dir),
        "output_dir": str(out),
        "student_num_layers": 1,
        "max_steps": 2,
        "max_train_samples": 16,
        "max_eval_samples": 8,
        "max_seq_length": 32,
        "report_to": "none",
        "temperature": 3.0,
        "use_cpu": True,
    }
    path = tmp_path / f"args{suffix}"
    path.write_text(json.dumps(options) if suffix == ".json" else yaml.safe_dump(options))
    distill_glue.main([str(path)])
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 1
    assert "| temperature | 3.0 |" in (out / "README.md").read_text()


@pytest.fixture
def bad_teachers(tmp_path, tokenizer):
    headless = tmp_path / "headless"
    torch.manual_seed(0)
    BertModel(tiny_config(len(tokenizer))).save_pretrained(headless)
    three = tmp_path / "three-labels"
    make_teacher(tokenizer, num_labels=3).save_pretrained(three)
    other_vocab = tmp_path / "other-vocab.json"
    tiny_config(len(tokenizer) + 10, layers=2).to_json_file(other_vocab)
    return headless, three, other_vocab


def test_bad_input_fails_before_training_and_writes_nothing(teacher_dir, glue_dir, tmp_path, bad_teachers):
    headless, three, other_vocab = bad_teachers
    out = tmp_path / "never-written"
    cases = [
        (
            ValueError,
            "Valid task names",
            distill_args(teacher_dir, glue_dir, out, "imdb", "--student_num_layers", "2"),
        ),
        (
            FileNotFoundError,
            "RTE/train.tsv",
            distill_args(teacher_dir, tmp_path, out, "rte", "--student_num_layers", "2"),
        ),
        (
            ValueError,
            "no sequence-classification head",
            distill_args(headless, glue_dir, out, "rte", "--student_num_layers", "2"),
        ),
        (ValueError, "predicts 3 label", distill_args(three, glue_dir, out, "rte", "--student_num_layers", "2")),
        (ValueError, "out of range", distill_args(teacher_dir, glue_dir, out, "rte", "--student_layers", "0,7")),
        (
            ValueError,
            "student_num_layers=9 is out of range",
            distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "9"),
        ),
        (
            ValueError,
            "vocabularies differ",
            distill_args(teacher_dir, glue_dir, out, "rte", "--student_config", str(other_vocab)),
        ),
        (ValueError, "Valid methods: kd", distill_args(teacher_dir, glue_dir, out, "rte", "--method", "magic")),
        (
            ValueError,
            r"--max_seq_length 4096 is more than the teacher can read \(128 positions\)",
            distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "2", "--max_seq_length", "4096"),
        ),
        (
            FileNotFoundError,
            "teacher_model_name_or_path not found",
            distill_args(tmp_path / "nope", glue_dir, out, "rte", "--student_num_layers", "2"),
        ),
    ]
    for error, message, argv in cases:
        with pytest.raises(error, match=message):
            distill_glue.main(argv)
        assert not out.exists(), message


def test_non_empty_output_dir_is_refused_without_overwrite_and_resumed_with_checkpoints(
    teacher_dir, glue_dir, tmp_path
):
    out = tmp_path / "student"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "2")
    with pytest.raises(ValueError, match="exists and is not empty. Pass --overwrite_output_dir"):
        distill_glue.main(argv)
    distill_glue.main([*argv, "--overwrite_output_dir", "true", "--save_steps", "2"])
    assert (out / "notes.txt").read_text() == "keep me" and (out / "checkpoint-2").is_dir()
    # A second run into the same folder picks up its last checkpoint instead of starting over.
    distill_glue.main([*argv[:-2], "--max_steps", "5", "--save_steps", "2", "--student_num_layers", "2"])
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert json.loads((out / "train_results.json").read_text())["epoch"] > 0


def test_finetune_teacher_with_lora_saves_a_merged_plain_checkpoint(teacher_dir, glue_dir, tmp_path):
    out = tmp_path / "teacher"
    metrics = finetune_teacher.main(
        [
            "--task_name",
            "mrpc",
            "--model_name_or_path",
            str(teacher_dir),
            "--glue_dir",
            str(glue_dir),
            "--output_dir",
            str(out),
            "--lora_r",
            "4",
            "--learning_rate",
            "1e-2",
            *FAST,
        ]
    )
    assert {"eval_f1", "eval_accuracy"} <= set(metrics)
    assert not list(out.glob("adapter_*")), "LoRA adapters must be merged, not saved separately"
    tuned = AutoModelForSequenceClassification.from_pretrained(out)
    base = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    assert tuned.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(tuned.state_dict()[query], base.state_dict()[query])


@pytest.mark.parametrize(
    "method, components, layers",
    [("pkd", {"loss_ce", "loss_kd", "loss_pt"}, [0, 1]), ("distilbert", {"loss_ce", "loss_kd", "loss_cos"}, [0, 2]),
     ("finetune", {"loss_ce"}, [1, 3])],
)  # fmt: skip
def test_layer_methods_through_distill_glue(teacher_dir, glue_dir, tmp_path, method, components, layers):
    out = tmp_path / method
    argv = distill_args(teacher_dir, glue_dir, out, "rte", "--student_num_layers", "2", "--method", method)
    # Learning rate 0 keeps the initial weights, so the method's default choice of teacher layers can be read off.
    distill_glue.main([*argv, "--logging_steps", "1", "--learning_rate", "0"])
    logged = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in log]
    assert components <= set(logged[0]) and not ({"loss_pt", "loss_cos", "loss_kd"} - components) & set(logged[0])
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).state_dict()
    student = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    for i, source in enumerate(layers):
        key = "bert.encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(student[key.format(i)], teacher[key.format(source)]), (method, i, source)
    card = (out / "README.md").read_text()
    assert f"- {method}" in card or method == "finetune"


def test_kd_into_a_narrower_random_student_from_a_config(teacher_dir, glue_dir, tmp_path, tokenizer):
    config = tiny_config(len(tokenizer), layers=1)
    config.hidden_size, config.num_attention_heads, config.intermediate_size = 16, 2, 32
    config.to_json_file(tmp_path / "student.json")
    out = tmp_path / "narrow"
    distill_glue.main(
        distill_args(teacher_dir, glue_dir, out, "sst2", "--student_config", str(tmp_path / "student.json"),
                     "--cache_teacher_logits", "true", "--logging_steps", "1")
    )  # fmt: skip
    logged = [log for log in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in log]
    assert len(logged) == 3 and all("loss_kd" in log for log in logged), "kd against the cached teacher logits"
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert (student.config.hidden_size, student.config.num_hidden_layers) == (16, 1)
    assert student.config.num_labels == 2


def test_run_adds_up_the_wall_time_of_interrupted_attempts(tmp_path):
    """check_layer_methods.run, used by the real-data checks and the GLUE suite: an attempt killed with its session
    counts up to its log's last write, a resumed run adds to it, a finished run's successor counts afresh."""
    import os
    import sys
    import time

    run = load_script("checks/check_layer_methods").run
    log = tmp_path / "job.log"
    clock = tmp_path / "job.log.time.json"
    say = [sys.executable, "-c", "print('attempt')"]
    first = run(say, log)
    assert 0 < first < 60 and json.loads(clock.read_text())["succeeded"]

    # An attempt that started 1000 s ago and last wrote its log 400 s later, then died without a word.
    started = time.time() - 1000
    log.write_text("interrupted output\n")
    os.utime(log, (started + 400, started + 400))
    clock.write_text(json.dumps({"seconds": 50.0, "started": started, "succeeded": False}))
    resumed = run(say, log)
    assert 450 <= resumed < 450 + 60
    assert log.read_text() == "interrupted output\nattempt\n", "the log keeps every attempt"

    fresh = run(say, log)  # after a success: a new training, counted from zero, a new log
    assert fresh < 60 and log.read_text() == "attempt\n"

    with pytest.raises(SystemExit, match="failed"):
        run([sys.executable, "-c", "raise SystemExit(3)"], log)
    failed = json.loads(clock.read_text())
    assert not failed["succeeded"] and failed["started"] is None
    assert run(say, log) >= failed["seconds"]


def test_a_finished_run_of_another_seed_is_refused(tmp_path):
    """The real-data checks and the suite record a finished folder without training it again: one trained with
    another seed must be refused, not recorded as this seed's result."""
    import torch
    from transformers import TrainingArguments

    from bertdistill.results import ResultStore
    from glue_tasks import get_task

    checks = load_script("checks/check_layer_methods")
    folder = tmp_path / "kd"
    folder.mkdir()
    torch.save(TrainingArguments(output_dir=str(folder), seed=42, report_to=[]), folder / "training_args.bin")
    (folder / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.6}))
    checks.check_trained_seed(folder, "42")
    checks.check_trained_seed(tmp_path / "never-trained", "43")
    store = ResultStore(tmp_path / "results")
    with pytest.raises(ValueError, match="trained with seed 42, not 43"):
        checks.train_and_record(get_task("rte"), store, "kd", "43", ["unused"], folder, method="kd")
    assert not store.has("rte", "kd", "43")


def test_student_layers_from_a_pre_trained_encoder_with_a_fresh_head(teacher_dir, glue_dir, tmp_path, tokenizer):
    """Patient-KD's initialisation: the student's layers come from the pre-trained encoder, not the teacher."""
    torch.manual_seed(9)
    encoder = BertModel(tiny_config(len(tokenizer)))
    encoder.save_pretrained(tmp_path / "pretrained")
    out = tmp_path / "student"
    pretrained = ["--student_layers_from", str(tmp_path / "pretrained")]
    distill_glue.main(distill_args(teacher_dir, glue_dir, out, "rte", "--method", "pkd", "--student_num_layers", "2",
                                   *pretrained, "--learning_rate", "0"))  # fmt: skip
    student = AutoModelForSequenceClassification.from_pretrained(out)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    # pkd takes the first layers; with learning rate 0 they are still the encoder's.
    torch.testing.assert_close(
        student.bert.encoder.layer[1].output.dense.weight, encoder.encoder.layer[1].output.dense.weight
    )
    torch.testing.assert_close(
        student.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight
    )
    assert not torch.allclose(student.classifier.weight, teacher.classifier.weight)
    with pytest.raises(ValueError, match="needs --student_num_layers or --student_layers"):
        distill_glue.main(distill_args(teacher_dir, glue_dir, tmp_path / "bad", "rte", "--method", "pkd",
                                       "--student_layers_from", str(tmp_path / "pretrained")))  # fmt: skip


def test_distill_glue_records_the_speed_levers_of_each_stage(teacher_dir, glue_dir, tmp_path):
    out = tmp_path / "tiny"
    narrow = ["--student_num_layers", "2", "--student_hidden_size", "16", "--student_intermediate_size", "32"]
    distill_glue.main(
        distill_args(teacher_dir, glue_dir, out, "rte", "--method", "tinybert", "--stage", "both", *narrow,
                     "--bf16", "false", "--cache_teacher_outputs", "true", "--teacher_cache_dir", str(tmp_path / "c"))
    )  # fmt: skip
    first = json.loads((tmp_path / "tiny-intermediate" / "train_results.json").read_text())["speed_levers"]
    second = json.loads((out / "train_results.json").read_text())["speed_levers"]
    # The user's choices, for the stage they apply to; bertdistill's for the rest.
    assert first["bf16"] == second["bf16"] == {"value": False, "source": "user", "reason": ""}
    assert first["cache_teacher_outputs"] == {"value": True, "source": "user", "reason": ""}
    assert first["cache_teacher_logits"]["value"] is False
    assert second["cache_teacher_logits"] == {
        "value": True,
        "source": "auto",
        "reason": "logit-only loss: the teacher runs once instead of every epoch",
    }
    assert second["cache_teacher_outputs"]["source"] == "auto" and second["cache_teacher_outputs"]["value"] is False
    assert first["train_sampling_strategy"]["value"] == second["train_sampling_strategy"]["value"] == "group_by_length"
    assert len(list((tmp_path / "c").iterdir())) == 1, "one teacher-output cache, for the intermediate stage"
    card = (out / "README.md").read_text()
    assert "| bf16 | False (user) |" in card and "| cache_teacher_logits | True (auto: logit-only loss" in card


def test_distill_glue_feature_losses_with_pretraining_stage(teacher_dir, glue_dir, tmp_path):
    """`--method feature`: FT's paraphraser is pre-trained in `<out>-pretrain`, the task stage loads it and trains
    with KD, RKD and SP; the card lists the losses and their weights."""
    out = tmp_path / "feat"
    metrics = distill_glue.main(
        distill_args(teacher_dir, glue_dir, out, "rte", "--method", "feature", "--student_num_layers", "2",
                     "--feature_losses", "rkd,sp,ft", "--feature_weights", "1,100,200", "--stage", "both",
                     "--logging_steps", "1")
    )  # fmt: skip
    assert "eval_accuracy" in metrics
    assert (tmp_path / "feat-pretrain" / "distillation_extras.safetensors").is_file()
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert {"loss_kd", "loss_rkd", "loss_sp", "loss_ft"} <= set(logs[0])
    first = json.loads((tmp_path / "feat-pretrain" / "trainer_state.json").read_text())["log_history"]
    assert "loss_ft" in first[0] and "loss_kd" not in first[0]
    card = (out / "README.md").read_text()
    assert "rkd,sp,ft" in card and "1,100,200" in card
