"""scripts/checks/run_glue_suite.py on a tiny 6-layer base model and a few real GLUE rows: the pipeline runs, writes
one result file per (task, run), never retrains a finished run, and reports averages, retention, latency and
targets."""

import json
import shutil

import pytest
from transformers import BertModel

from bertdistill.results import ResultStore
from glue_tasks import get_task

from conftest import REPO, load_script, save_with_tokenizer, tiny_config


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, tokenizer):
    return save_with_tokenizer(
        BertModel(tiny_config(len(tokenizer), layers=6)), tokenizer, tmp_path_factory.mktemp("base6")
    )


def suite_args(base, glue_dir, tmp_path, *extra):
    return ["--glue_dir", str(glue_dir), "--model_name_or_path", str(base), "--output_dir", str(tmp_path / "runs"),
            "--results_dir", str(tmp_path / "results"), "--report", str(tmp_path / "suite.md"),
            "--max_train_samples", "48", "--max_eval_samples", "24", "--latency_repeats", "1", *extra]  # fmt: skip


def test_suite_records_each_run_once_and_reports(tiny_base, glue_dir, tmp_path, capsys):
    suite = load_script("checks/run_glue_suite")
    argv = suite_args(tiny_base, glue_dir, tmp_path, "--tasks", "rte", "--runs", "teacher", "finetune", "kd", "int8")
    suite.main(argv)  # INT8 of the default source, tinybert, which this run did not train: skipped, and said so
    assert "rte: no tinybert student to quantize" in capsys.readouterr().out
    assert not list((tmp_path / "results" / "rte").glob("int8*"))
    argv += ["--int8_source", "kd"]
    rows = {row["run"]: row for row in suite.main(argv)}
    files = sorted(p.name for p in (tmp_path / "results" / "rte").glob("*.json"))
    assert files == ["finetune-seed42.json", "int8-kd-seed42.json", "kd-seed42.json", "teacher-seed42.json"]
    assert list(rows) == ["teacher", "finetune", "kd", "int8-kd"]
    assert rows["int8-kd"]["source"] == "kd" and rows["kd"]["layers"] == 3 and rows["teacher"]["layers"] == 6
    assert rows["teacher"]["retention"] == pytest.approx(1.0)
    kd = json.loads((tmp_path / "results" / "rte" / "kd-seed42.json").read_text())
    assert rows["kd"]["scores"]["rte"] == pytest.approx(100 * kd["eval_results"]["eval_accuracy"])
    assert rows["kd"]["average"] == pytest.approx(rows["kd"]["scores"]["rte"]), "one task: its score"
    assert all(row["latency_b32_ms"] > 0 for row in rows.values())
    latency = json.loads((tmp_path / "results" / "latency.json").read_text())
    assert latency["teacher"]["speedup_b32"] == 1.0 and rows["kd"]["speedup_b32"] == latency["kd"]["speedup_b32"]
    assert rows["int8-kd"]["gain_over_source_b1"] > 0 and rows["int8-kd"]["gain_over_source_b32"] > 0
    report = (tmp_path / "suite.md").read_text()
    assert "| kd |" in report and "| int8-kd |" in report and "## Targets" in report
    assert "beats the no-teacher baseline" in report and "INT8 >= 1.5x faster (batch 32) than its float32 kd" in report
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "rte").glob("*.json")]
    minutes = sum(r["wall_time_s"] for r in records) / 60
    assert "train (min) |" in report and f"every run: rte {minutes:.0f} min." in report
    assert rows["kd"]["train_s"] == kd["wall_time_s"] > 0
    assert (tmp_path / "suite.png").stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "rte").glob("*-seed42.json")}
    again = suite.main(argv)  # everything recorded: nothing is trained again, nothing overwritten
    assert [r["run"] for r in again] == list(rows)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    log = json.loads((tmp_path / "suite.json").read_text())
    assert [r["run"] for r in log["rows"]] == list(rows)

    # Another seed trains its own runs in its own folders; it never records seed 42's checkpoints as its own.
    suite.main(argv[: argv.index("--runs")] + ["--runs", "teacher", "finetune", "--seed", "43"])
    finetune = json.loads((tmp_path / "results" / "rte" / "finetune-seed43.json").read_text())
    assert f"--output_dir {tmp_path / 'runs' / 'seed43' / 'rte' / 'finetune'}" in finetune["command"]
    assert "--seed 43" in finetune["command"] and finetune["wall_time_s"] > 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_whole_suite_on_two_tasks(tiny_base, glue_dir, tmp_path):
    suite = load_script("checks/run_glue_suite")
    rows = suite.main(suite_args(tiny_base, glue_dir, tmp_path, "--tasks", "rte", "stsb"))
    names = [row["run"] for row in rows]
    assert names == ["teacher", "finetune", "kd", "pkd", "distilbert", "tinybert", "dynabert-w0.5-d1",
                     "dynabert-w1-d0.5", "int8-tinybert"]  # fmt: skip
    for row in rows:
        assert set(row["scores"]) == {"rte", "stsb"} and row["average"] is not None


def test_task_score_and_pareto_front():
    from bertdistill.plots import pareto_front
    from glue_tasks import get_task

    suite = load_script("checks/run_glue_suite")
    assert suite.task_score(get_task("mrpc"), {"eval_f1": 0.8, "eval_accuracy": 0.7}) == pytest.approx(75.0)
    assert suite.task_score(get_task("mnli"), {"eval_accuracy": 0.8, "eval_accuracy_mm": 0.6}) == pytest.approx(70.0)
    assert suite.task_score(get_task("cola"), {"eval_matthews_correlation": 0.3}) == pytest.approx(30.0)
    # (cost, metric): the cheapest, then each point better than every cheaper one.
    assert pareto_front([(3, 0.9), (1, 0.5), (2, 0.4), (2, 0.7), (4, 0.8)]) == [1, 3, 0]


def test_int8_target_compares_each_task_with_the_same_source():
    suite = load_script("checks/run_glue_suite")
    rows = [
        {"run": "tinybert", "scores": {"rte": 60.0, "mrpc": 80.0}, "latency_b32_ms": 100.0, "retention": None},
        {"run": "int8-tinybert", "source": "tinybert", "scores": {"rte": 59.5, "mrpc": 78.0}, "latency_b32_ms": 50.0,
         "retention": None},
    ]  # fmt: skip
    (line,) = suite.targets(rows)
    assert line == ("- INT8 >= 1.5x faster (batch 32) than its float32 tinybert at <= 1 point lost on every task: "
                    "2.00x, +2.00 points lost on mrpc (+1.25 on the average) (**missed**).")  # fmt: skip
    rows[1]["scores"]["mrpc"] = 79.5
    assert suite.targets(rows)[0].endswith("+0.50 points lost on rte (+0.50 on the average) (met).")
    rows[0]["latency_b1_ms"], rows[1]["latency_b1_ms"] = 8.0, 5.0
    rows[1]["latency_b32_ms"] = 80.0
    assert suite.targets(rows)[0].endswith("task: 1.25x (1.60x at batch 1), +0.50 points lost on rte (+0.50 on the "
                                           "average) (**missed**).")  # fmt: skip
    rows[1]["gain_over_source_b32"] = 1.55  # paired within repeats: taken over the ratio of the medians
    assert suite.targets(rows)[0].endswith("task: 1.55x (1.60x at batch 1), +0.50 points lost on rte (+0.50 on the "
                                           "average) (met).")  # fmt: skip


def test_budget_in_words():
    suite = load_script("checks/run_glue_suite")
    assert suite.budget_text(suite.SUITE_SETTINGS["sst2"]) == "length 64, 1 epoch, the first 16000 training rows"
    assert suite.budget_text(suite.SUITE_SETTINGS["cola"]) == "length 64, 3 epochs, every training row"


def test_teacher_reused_only_when_trained_by_the_same_command(tiny_base, glue_dir, tmp_path):
    suite = load_script("checks/run_glue_suite")
    other = tmp_path / "other"
    suite.main(suite_args(tiny_base, glue_dir, other, "--tasks", "rte", "--runs", "teacher"))
    source = json.loads((other / "results" / "rte" / "teacher-seed42.json").read_text())
    reuse = ["--reuse_teachers", str(other / "runs" / "seed42"), str(other / "results")]

    suite.main(suite_args(tiny_base, glue_dir, tmp_path, "--tasks", "rte", "--runs", "teacher", *reuse))
    record = json.loads((tmp_path / "results" / "rte" / "teacher-seed42.json").read_text())
    assert record["copied_from"] == str(other / "runs" / "seed42" / "rte" / "teacher")
    assert f"--reuse_teachers {other / 'runs' / 'seed42'} {other / 'results'}`" in (tmp_path / "suite.md").read_text()
    assert record["eval_results"] == source["eval_results"] and record["wall_time_s"] == source["wall_time_s"]
    assert f"--output_dir {tmp_path / 'runs' / 'seed42' / 'rte' / 'teacher'}" in record["command"]
    copied = (tmp_path / "runs" / "seed42" / "rte" / "teacher" / "model.safetensors").read_bytes()
    assert copied == (other / "runs" / "seed42" / "rte" / "teacher" / "model.safetensors").read_bytes()

    # A record without a wall time (older checks wrote none): the Trainer's train_runtime of the copied teacher.
    (other / "results" / "rte" / "teacher-seed42.json").write_text(json.dumps(source | {"wall_time_s": None}))
    runtime = json.loads((other / "runs" / "seed42" / "rte" / "teacher" / "train_results.json").read_text())[
        "train_runtime"
    ]
    untimed = tmp_path / "untimed"
    suite.main(suite_args(tiny_base, glue_dir, untimed, "--tasks", "rte", "--runs", "teacher", *reuse))
    record = json.loads((untimed / "results" / "rte" / "teacher-seed42.json").read_text())
    assert record["copied_from"] and record["wall_time_s"] == round(runtime)

    # Another budget is another teacher: trained, not copied.
    elsewhere = tmp_path / "elsewhere"
    argv = suite_args(tiny_base, glue_dir, elsewhere, "--tasks", "rte", "--runs", "teacher", *reuse)
    argv[argv.index("--max_train_samples") + 1] = "40"
    suite.main(argv)
    record = json.loads((elsewhere / "results" / "rte" / "teacher-seed42.json").read_text())
    assert "copied_from" not in record and "--max_train_samples 40" in record["command"]


def test_dynabert_gets_its_own_budget():
    from glue_tasks import get_task

    suite = load_script("checks/run_glue_suite")

    def options(argv, task):
        command = suite.dynabert_arguments(get_task(task), suite.parse_args(argv))
        return {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}

    # SST-2's suite budget is 16000 rows for 1 epoch; DynaBERT gets DYNABERT_BUDGET instead.
    sst2 = options([], "sst2")
    budget = suite.DYNABERT_BUDGET
    assert sst2["--max_train_samples"] == str(budget["max_train_samples"]) == "1500"
    assert sst2["--num_train_epochs"] == sst2["--width_num_train_epochs"] == str(budget["epochs"])
    assert sst2["--final_num_train_epochs"] == str(budget["final_epochs"])
    assert sst2["--max_seq_length"] == "64" and sst2["--task_name"] == "sst2"
    # A smaller trial budget wins; the Hub (no --glue_dir) stays the Hub.
    trial = options(["--max_train_samples", "48", "--max_eval_samples", "24", "--glue_dir", ""], "rte")
    assert trial["--max_train_samples"] == "48" and trial["--max_eval_samples"] == "24"
    assert "--glue_dir" not in trial


def test_dynabert_reused_only_with_the_same_recipe_and_teacher(tmp_path):
    from glue_tasks import get_task

    suite = load_script("checks/run_glue_suite")
    task = get_task("mrpc")
    # What scripts/checks/check_dynabert.py leaves: its report's arguments, its elastic model, the teacher it used.
    check_args = {"glue_dir": "glue", "tasks": ["mrpc"], "teacher_root": str(tmp_path / "lm"), "learning_rate": "5e-5",
                  "importance_samples": 2048, "max_train_samples": 1500, "max_eval_samples": None, "epochs": 3,
                  "final_epochs": 3}  # fmt: skip
    report = tmp_path / "check.json"
    source = tmp_path / "check" / "mrpc" / "seed42" / "dynabert"
    source.mkdir(parents=True)
    (source / "eval_results.json").write_text("{}")
    for folder in (tmp_path / "lm" / "mrpc" / "teacher", tmp_path / "suite_teacher"):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"same weights")
    argv = ["--glue_dir", "glue", "--reuse_dynabert", str(tmp_path / "check"), str(report)]

    def reusable(**changes):
        report.write_text(json.dumps({"args": check_args | changes}))
        return suite.reusable_dynabert(task, suite.parse_args(argv), tmp_path / "suite_teacher")

    assert reusable() == source
    assert reusable(epochs=8) is None and reusable(final_epochs=0) is None and reusable(learning_rate="2e-5") is None
    assert reusable(max_train_samples=None) is None and reusable(tasks=["cola"]) is None
    assert reusable(epochs=None) == source, "the check's default for MRPC is 3 epochs per stage"
    (tmp_path / "suite_teacher" / "model.safetensors").write_bytes(b"other weights")
    assert reusable() is None

    for stage, seconds in (("dynabert-width", 10.0), ("dynabert-width_depth", 20.5), ("dynabert", 30.0)):
        (source.parent / stage).mkdir(exist_ok=True)
        (source.parent / stage / "train_results.json").write_text(json.dumps({"train_runtime": seconds}))
    assert suite.training_seconds(source) == pytest.approx(60.5)


def test_a_resumed_dynabert_keeps_its_training_time_and_origin(tmp_path):
    """An invocation stopped after DynaBERT trained (or was copied) but before every sub-network was recorded: the
    next one records the rest with the same training time and origin, not 0 s as if it had cost nothing."""
    from glue_tasks import get_task

    suite = load_script("checks/run_glue_suite")
    task, args = get_task("rte"), suite.parse_args([])
    store, root = ResultStore(tmp_path / "results"), tmp_path / "runs" / "rte"
    names = [suite.dynabert_name(w, d) for w, d in suite.DYNABERT_SETTINGS]
    for stage, seconds in (("dynabert-width", 100.0), ("dynabert-width_depth", 200.0), ("dynabert", 50.0)):
        (root / stage).mkdir(parents=True)
        (root / stage / "train_results.json").write_text(json.dumps({"train_runtime": seconds}))
    assert suite.earlier_dynabert(task, args, store, names, root) == (350.0, None), "nothing else: the runtimes"
    (root / "dynabert.log.time.json").write_text(json.dumps({"seconds": 400.5, "started": None, "succeeded": True}))
    assert suite.earlier_dynabert(task, args, store, names, root) == (400.5, None), "the suite's own clock"
    store.save("rte", names[0], args.seed, {"dynabert_wall_time_s": 3488, "copied_from": "check/rte/seed42"})
    assert suite.earlier_dynabert(task, args, store, names, root) == (3488, "check/rte/seed42")


@pytest.mark.parametrize("task_name", ["rte", "mrpc", "cola", "stsb"])
def test_teachers_recorded_before_the_checks_moved_are_still_reused(task_name, teacher_dir, tmp_path):
    """results/layer_methods was recorded while the checks lived in scripts/ (docs/glue_suite.md copied those
    teachers with --reuse_teachers): the commands the checks build from scripts/checks/ still equal the recorded
    ones, output folder aside, so a rerun copies those teachers instead of training new ones."""
    suite = load_script("checks/run_glue_suite")
    task = get_task(task_name)
    runs, results = tmp_path / "layer_methods_runs", tmp_path / "layer_methods_results"
    shutil.copytree(teacher_dir, runs / task_name / "teacher")
    (runs / task_name / "teacher" / "eval_results.json").write_text(json.dumps({f"eval_{task.main_metric}": 0.5}))
    recorded = REPO / "results" / "layer_methods" / task_name / "teacher-seed42.json"
    (results / task_name).mkdir(parents=True)
    shutil.copy(recorded, results / task_name / recorded.name)

    args = suite.parse_args(["--glue_dir", "../shared/glue_data", "--tasks", task_name])
    common = suite.task_arguments(task, args, suite.SUITE_SETTINGS[task_name])
    store = ResultStore(tmp_path / "suite_results")
    assert suite.reuse_teacher(task, tmp_path / "suite_runs", "42", store, common, runs, results)
    record = json.loads(store.path(task_name, "teacher", "42").read_text())
    assert record["copied_from"] == str(runs / task_name / "teacher")
    assert record["command"].startswith("scripts/finetune_teacher.py ")
