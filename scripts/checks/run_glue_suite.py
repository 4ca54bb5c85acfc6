#!/usr/bin/env python
"""The GLUE suite: what every method buys, side by side with the teacher and the student trained without a teacher.

    python scripts/checks/run_glue_suite.py --glue_dir ../shared/glue_data
    python scripts/checks/run_glue_suite.py --tasks rte mrpc --runs teacher finetune kd int8   # a part of it

Per task (budget in SUITE_SETTINGS: sequence length, epochs, training rows):
- `teacher`: the packaged MiniLM-L6 (6 x 384), or --model_name_or_path, fine-tuned on the task;
- `finetune`: the 3-layer student (teacher layers --student_layer_selection, the same for every method so that only
  the losses differ) fine-tuned without a teacher: the baseline every method has to beat;
- `kd`, `pkd`, `distilbert`, `tinybert` (`--stage both`): that student distilled with each method's defaults;
- `dynabert`: one elastic model (`--stage both`, with DYNABERT_BUDGET: the first 1500 training rows, 3 epochs per
  stage + 3 of final fine-tuning, the recipe of docs/dynabert_matched.md), from which the (width 0.5, depth 1.0)
  and (1.0, 0.5) sub-networks are exported and evaluated (rows `dynabert-w0.5-d1`, `dynabert-w1-d0.5`);
- `int8`: one distilled student (--int8_source, TinyBERT by default: the same method on every task, so that its row
  has an average and a latency to set against its float32 row), INT8 dynamically quantized (CPU), evaluated on the
  dev set; recorded as `int8-<source>`.

Every finished (task, run) leaves `results/glue_suite/<task>/<run>-seed<seed>.json` (metrics, shape, size, command,
wall time, machine); a run with a result file is never trained again and an interrupted suite continues where it
stopped. Checkpoints go to `<--output_dir>/seed<seed>/<task>/<run>` (large, not committed), one folder per seed. The
report (--report, markdown + .json + a .png of the average metric against latency and size with the Pareto front)
is rebuilt from the result files of the tasks given; latency is measured on the checkpoints present, models
interleaved, and kept in `results/glue_suite/latency.json` for when they are gone.

Budget on 2 CPU cores, measured by the default suite (seed 42, docs/glue_suite.md): training wall time RTE 170 min
(its DynaBERT partly ran with the cores shared), MRPC 109, CoLA 48, STS-B 77, SST-2 61; about 7.5 h in
all, resumable at any point. The five teachers took 53 min, each 3-layer method 27-28 min over the five tasks
(TinyBERT 58: two stages) and DynaBERT, about half of the whole, 16-58 min a task alone (CoLA 16, STS-B 18, SST-2 31,
MRPC 58; RTE 118 with the cores shared).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "checks"))  # the checks it builds on

import check_dynabert  # noqa: E402
import check_layer_methods  # noqa: E402

from bertdistill import DynaBertConfig  # noqa: E402
from bertdistill.benchmark import count_parameters, measure_side_by_side  # noqa: E402
from bertdistill.compression import (  # noqa: E402
    export_subnetwork,
    make_elastic,
    quantize_dynamic_int8,
    serialized_size,
)
from bertdistill.glue_run import evaluate_model, tokenize_split  # noqa: E402
from bertdistill.plots import pareto_plot  # noqa: E402
from bertdistill.results import ResultStore  # noqa: E402
from glue_tasks import get_task, load_glue_split  # noqa: E402

# Sequence length, epochs and training rows per task, sized for 2 CPU cores (None: the whole training set).
SUITE_SETTINGS = {
    "cola": {"max_seq_length": 64, "epochs": 3, "max_train_samples": None},
    "sst2": {"max_seq_length": 64, "epochs": 1, "max_train_samples": 16000},
    "mrpc": {"max_seq_length": 128, "epochs": 3, "max_train_samples": None},
    "stsb": {"max_seq_length": 128, "epochs": 3, "max_train_samples": None},
    "rte": {"max_seq_length": 128, "epochs": 3, "max_train_samples": None},
    "wnli": {"max_seq_length": 128, "epochs": 3, "max_train_samples": None},
    **dict.fromkeys(check_layer_methods.HUB_ONLY_TASKS, check_layer_methods.HUB_ONLY_SETTINGS),
}
DEFAULT_TASKS = ["cola", "sst2", "mrpc", "stsb", "rte"]
DISTILLED = {"kd": [], "pkd": [], "distilbert": [], "tinybert": ["--stage", "both"]}
DYNABERT_SETTINGS = [(0.5, 1.0), (1.0, 0.5)]
# DynaBERT runs 12 sub-networks a step in two stages and a final one: on 2 cores it gets the recipe of
# scripts/checks/check_dynabert.py (docs/dynabert_matched.md) on the first training rows, not the task's budget.
DYNABERT_BUDGET = {"max_train_samples": 1500, "epochs": 3, "final_epochs": 3}
RUNS = ["teacher", "finetune", *DISTILLED, "dynabert", "int8"]


def dynabert_name(width: float, depth: float) -> str:
    return f"dynabert-w{width:g}-d{depth:g}"


def int8_name(source: str) -> str:
    return f"int8-{source}"


def report_order(int8_source: str) -> list[str]:
    return ["teacher", "finetune", *DISTILLED, *(dynabert_name(w, d) for w, d in DYNABERT_SETTINGS),
            int8_name(int8_source)]  # fmt: skip


def task_score(task, eval_results: dict) -> float:
    """The task's GLUE score x 100: the mean of its metrics (MRPC/QQP F1 and accuracy, STS-B Pearson and
    Spearman; MNLI matched and mismatched accuracy), as the GLUE leaderboard averages them."""
    values = [eval_results[f"eval_{m}"] for m in task.metrics]
    if "eval_accuracy_mm" in eval_results:
        values.append(eval_results["eval_accuracy_mm"])
    return 100 * statistics.fmean(values)


def without_option(command: list[str], option: str) -> list[str]:
    """`command` without `option` and its value."""
    return [a for i, a in enumerate(command) if a != option and (i == 0 or command[i - 1] != option)]


def teacher_recipe(command: list[str]) -> list[str]:
    """A teacher command's arguments that decide the teacher: the output folder left out, and
    `--regression_head_init zero` (what finetune_teacher.py did before the option existed) made explicit, so a
    command recorded before it equals today's."""
    recipe = without_option(command, "--output_dir")
    return recipe if "--regression_head_init" in recipe else [*recipe, "--regression_head_init", "zero"]


def reuse_teacher(task, output_root: Path, seed: str, store, common: list[str], runs: Path, results: Path) -> bool:
    """Copy the task's teacher from another check's folders (`runs/<task>/teacher`, its record in
    `results/<task>/teacher-seed<seed>.json`) when that teacher was trained by exactly the command this suite would
    run (output folder aside); the record keeps its wall time and says where it was copied from. Returns whether a
    teacher was copied; a suite that has its own teacher, or a teacher trained differently, is left alone."""
    target = output_root / task.name / "teacher"
    source = runs / task.name / "teacher"
    source_record = ResultStore(results).path(task.name, "teacher", seed)
    if (target / "eval_results.json").is_file() or store.has(task.name, "teacher", seed):
        return False
    if not (source / "eval_results.json").is_file() or not source_record.is_file():
        print(f"{task.name}: no teacher to reuse in {source} (with {source_record})", flush=True)
        return False
    record = json.loads(source_record.read_text())
    command = check_layer_methods.teacher_command(common, target)
    if teacher_recipe(record["command"].split()) != teacher_recipe(command[1:]):
        print(
            f"{task.name}: the teacher in {source} was trained by another command; training the suite's own",
            flush=True,
        )
        return False
    shutil.copytree(source, target)
    seconds = record.get("wall_time_s") or train_runtime([source])  # older records have no wall time
    store.save(task.name, "teacher", seed, check_layer_methods.result_record(
        task, target, command, seconds, method="teacher", copied_from=str(source),
        machine=record["machine"], date=record["date"],
    ))  # fmt: skip
    print(f"{task.name}: teacher copied from {source} (same command)", flush=True)
    return True


def record_exported(task, store, run_name, seed, folder: Path, metrics: dict, command: list[str], **extra) -> None:
    """Write an exported model's dev metrics next to it and record it like a trained run."""
    (folder / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    store.save(task.name, run_name, seed, check_layer_methods.result_record(task, folder, command, 0.0, **extra))


def budget_text(settings: dict) -> str:
    """A task's SUITE_SETTINGS in words, e.g. 'length 64, 1 epoch, the first 16000 training rows'."""
    epochs = settings["epochs"]
    rows = settings["max_train_samples"]
    return (f"length {settings['max_seq_length']}, {epochs} epoch{'s' if epochs != 1 else ''}, "
            + (f"the first {rows} training rows" if rows else "every training row"))  # fmt: skip


def seed_root(args) -> Path:
    """Where this seed's checkpoints go: `<output_dir>/seed<seed>` (then `<task>/<run>`), so seeds never share one."""
    return Path(args.output_dir) / f"seed{args.seed}"


def task_arguments(task, args, settings: dict) -> list[str]:
    """The arguments every run of the task shares, with `settings` (SUITE_SETTINGS' keys) as its budget."""
    common = check_layer_methods.common_arguments(task, args.glue_dir, args.seed, settings)
    if not args.glue_dir:  # the Hub: the scripts' default when no --glue_dir is given
        common = without_option(common, "--glue_dir")
    return common + (["--max_eval_samples", str(args.max_eval_samples)] if args.max_eval_samples else [])


def run_task(task, args, store: ResultStore) -> None:
    settings = SUITE_SETTINGS[task.name] | (
        {"max_train_samples": args.max_train_samples} if args.max_train_samples else {}
    )
    out_root = seed_root(args)
    root = out_root / task.name
    common = task_arguments(task, args, settings)
    base = ["--model_name_or_path", args.model_name_or_path] if args.model_name_or_path else []
    if args.reuse_teachers:
        reuse_teacher(task, out_root, args.seed, store, [*common, *base], *map(Path, args.reuse_teachers))
    teacher = check_layer_methods.ensure_teacher(
        task, args.glue_dir, out_root, args.seed, store, common=[*common, *base]
    )
    student = ["--teacher_model_name_or_path", str(teacher), "--student_num_layers", "3", "--student_layer_selection",
               args.student_layer_selection, "--learning_rate", args.learning_rate]  # fmt: skip
    methods = {"finetune": [], **DISTILLED}
    for name, extra in methods.items():
        if name in args.runs:
            out = root / name
            command = [sys.executable, "scripts/distill_glue.py", *common, "--method", name, *student,
                       "--output_dir", str(out), *extra]  # fmt: skip
            check_layer_methods.train_and_record(task, store, name, args.seed, command, out, method=name)

    names = [dynabert_name(w, d) for w, d in DYNABERT_SETTINGS]
    if "dynabert" in args.runs and not all(store.has(task.name, n, args.seed) for n in names):
        elastic = root / "dynabert"
        command = [sys.executable, "scripts/distill_glue.py", *dynabert_arguments(task, args), "--method", "dynabert",
                   "--stage", "both", "--teacher_model_name_or_path", str(teacher), "--learning_rate",
                   args.dynabert_learning_rate, "--output_dir", str(elastic)]  # fmt: skip
        seconds, reused = 0.0, None
        check_layer_methods.check_trained_seed(elastic, args.seed)
        if not (elastic / "eval_results.json").is_file():
            reused = reusable_dynabert(task, args, teacher) if args.reuse_dynabert else None
            if reused is not None:
                shutil.copytree(reused, elastic)
                seconds = training_seconds(reused)
                print(f"{task.name}: DynaBERT copied from {reused} (same recipe and teacher)", flush=True)
            else:
                seconds = check_layer_methods.run(command, root / "dynabert.log")
        else:
            seconds, reused = earlier_dynabert(task, args, store, names, root)
        model = make_elastic(AutoModelForSequenceClassification.from_pretrained(elastic))
        tokenizer = AutoTokenizer.from_pretrained(elastic)
        dev = dev_split(task, args, tokenizer)
        for (width, depth), name in zip(DYNABERT_SETTINGS, names):
            if store.has(task.name, name, args.seed):
                continue
            folder = root / name
            sub = export_subnetwork(model, width, depth)
            sub.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            metrics = evaluate_model(sub, dev, tokenizer, task)
            record_exported(task, store, name, args.seed, folder, metrics, command, method="dynabert",
                            width_mult=width, depth_mult=depth, dynabert_wall_time_s=round(seconds),
                            **({"copied_from": str(reused)} if reused else {}))  # fmt: skip

    name = int8_name(args.int8_source)
    if "int8" in args.runs and not store.has(task.name, name, args.seed):
        source = args.int8_source
        record = store.load(task.name).get(source, {}).get(args.seed)
        if record is None or not (root / source / "config.json").is_file():
            print(f"{task.name}: no {source} student to quantize (run it: --runs {source} int8)", flush=True)
            return
        model = AutoModelForSequenceClassification.from_pretrained(root / source)
        tokenizer = AutoTokenizer.from_pretrained(root / source)
        quantized = quantize_dynamic_int8(model)
        metrics = evaluate_model(quantized, dev_split(task, args, tokenizer), tokenizer, task, use_cpu=True)
        store.save(task.name, name, args.seed, {
            "metric": task.main_metric, "score": metrics[f"eval_{task.main_metric}"], "eval_results": metrics,
            "source": source, "source_score": record["score"], "layers": model.config.num_hidden_layers,
            "hidden": model.config.hidden_size, "parameters": count_parameters(model),
            "size_mb": serialized_size(quantized) / 2**20, "command": f"quantize_dynamic_int8({root / source})",
            "wall_time_s": 0, "machine": check_layer_methods.machine(), "date": time.strftime("%Y-%m-%d"),
        })  # fmt: skip


def earlier_dynabert(task, args, store: ResultStore, names: list[str], root: Path) -> tuple[float, str | None]:
    """The training seconds and origin (`copied_from`, or None when the suite trained it) of an elastic model that an
    earlier invocation trained or copied but stopped before recording every sub-network: from a sub-network it did
    record, else from the training's clock (`dynabert.log.time.json`), else from the copy's train_runtime."""
    recorded = store.load(task.name)
    for name in names:
        record = recorded.get(name, {}).get(args.seed)
        if record is not None:
            return record["dynabert_wall_time_s"], record.get("copied_from")
    clock = root / "dynabert.log.time.json"
    clock = json.loads(clock.read_text()) if clock.is_file() else {"succeeded": False}
    return (clock["seconds"] if clock["succeeded"] else training_seconds(root / "dynabert")), None


def dynabert_rows(task, args) -> int:
    """DYNABERT_BUDGET's training rows, or fewer when --max_train_samples or the task's budget says so."""
    return min(filter(None, (DYNABERT_BUDGET["max_train_samples"], args.max_train_samples,
                             SUITE_SETTINGS[task.name]["max_train_samples"])))  # fmt: skip


def dynabert_arguments(task, args) -> list[str]:
    """The task's arguments with DYNABERT_BUDGET's rows and epochs."""
    settings = SUITE_SETTINGS[task.name] | {"max_train_samples": dynabert_rows(task, args),
                                            "epochs": DYNABERT_BUDGET["epochs"]}  # fmt: skip
    return [*task_arguments(task, args, settings), "--width_num_train_epochs", str(DYNABERT_BUDGET["epochs"]),
            "--final_num_train_epochs", str(DYNABERT_BUDGET["final_epochs"])]  # fmt: skip


def reusable_dynabert(task, args, teacher: Path) -> Path | None:
    """The task's elastic model from scripts/checks/check_dynabert.py (`--reuse_dynabert OUTPUT_DIR REPORT_JSON`: its
    folders and the .json of its report, which records its arguments) when that check trained it with this suite's
    DynaBERT recipe (data, sequence length, rows, epochs, learning rate, importance rows, seed) from a teacher with
    the same weights; otherwise None, with the reason printed."""
    folder, report = map(Path, args.reuse_dynabert)
    source = folder / task.name / f"seed{args.seed}" / "dynabert"
    check = json.loads(report.read_text())["args"] if report.is_file() else {"tasks": []}
    if not (source / "eval_results.json").is_file() or task.name not in check["tasks"]:
        print(f"{task.name}: no DynaBERT model to reuse in {source} (reported in {report})", flush=True)
        return None
    ours = {"glue_dir": args.glue_dir, "max_seq_length": SUITE_SETTINGS[task.name]["max_seq_length"],
            "max_train_samples": dynabert_rows(task, args), "max_eval_samples": args.max_eval_samples,
            "epochs": DYNABERT_BUDGET["epochs"], "final_epochs": DYNABERT_BUDGET["final_epochs"],
            "learning_rate": float(args.dynabert_learning_rate),
            "importance_samples": DynaBertConfig.importance_samples}  # fmt: skip
    theirs = {"glue_dir": check["glue_dir"],
              "max_seq_length": check_layer_methods.TASK_SETTINGS[task.name]["max_seq_length"],
              "max_train_samples": check["max_train_samples"], "max_eval_samples": check["max_eval_samples"],
              "epochs": check["epochs"] or check_dynabert.DYNABERT_EPOCHS[task.name],
              "final_epochs": check["final_epochs"], "learning_rate": float(check["learning_rate"]),
              "importance_samples": check["importance_samples"]}  # fmt: skip
    differing = [f"{k} {theirs[k]} (suite: {ours[k]})" for k in ours if ours[k] != theirs[k]]
    their_teacher = Path(check["teacher_root"]) / task.name / "teacher" / "model.safetensors"
    digest = check_layer_methods.file_digest
    if not their_teacher.is_file() or digest(their_teacher) != digest(teacher / "model.safetensors"):
        differing.append(f"teacher {their_teacher.parent} (not the suite's {teacher})")
    if differing:
        print(
            f"{task.name}: {source} was trained differently: {', '.join(differing)}; training the suite's own",
            flush=True,
        )
        return None
    return source


def train_runtime(folders: list[Path]) -> float:
    """The Trainer's recorded train_runtime (train_results.json) of the given run folders, added up."""
    files = [folder / "train_results.json" for folder in folders if (folder / "train_results.json").is_file()]
    return sum(json.loads(f.read_text())["train_runtime"] for f in files)


def training_seconds(elastic: Path) -> float:
    """The training time of a `--stage both` DynaBERT run: its stages' train_runtime, added up."""
    return train_runtime([elastic.with_name(f"{elastic.name}-{stage}") for stage in ("width", "width_depth")]
                         + [elastic])  # fmt: skip


def dev_split(task, args, tokenizer):
    raw = load_glue_split(task, task.eval_splits[0], args.glue_dir)
    if args.max_eval_samples:
        raw = raw.select(range(min(args.max_eval_samples, len(raw))))
    return tokenize_split(raw, task, tokenizer, SUITE_SETTINGS[task.name]["max_seq_length"])


def measure_latency(tasks, args, results_dir: Path) -> dict:
    """CPU latency of every run's model at batch 1 and 32 on the first task's dev sentences, all models interleaved
    (INT8: the quantized copy of its source). Runs whose checkpoints are gone keep their earlier numbers."""
    latency_file = results_dir / "latency.json"
    latency = json.loads(latency_file.read_text()) if latency_file.is_file() else {}
    task = tasks[0]
    root = seed_root(args) / task.name
    store = ResultStore(results_dir)
    recorded = store.load(task.name)
    models = {}
    for name in report_order(args.int8_source):
        record = recorded.get(name, {}).get(args.seed)
        int8 = name == int8_name(args.int8_source)
        folder = root / (args.int8_source if int8 else name)
        if record and (folder / "config.json").is_file():
            model = AutoModelForSequenceClassification.from_pretrained(folder)
            models[name] = quantize_dynamic_int8(model) if int8 else model
    if "teacher" not in models or len(models) < 2:
        return latency
    tokenizer = AutoTokenizer.from_pretrained(root / "teacher")
    dev = load_glue_split(task, task.eval_splits[0], args.glue_dir).select(range(32))
    texts = [dev[c] for c in task.text_columns]
    length = SUITE_SETTINGS[task.name]["max_seq_length"]
    for n in (1, 32):
        inputs = tokenizer(*(list(t[:n]) for t in texts), truncation=True, max_length=length, padding=True,
                           return_tensors="pt")  # fmt: skip
        run = measure_side_by_side(models, inputs, repeats=args.latency_repeats * (3 if n == 1 else 1))
        for name in models:
            latency.setdefault(name, {})[f"latency_b{n}_ms"] = run.median(name) * 1e3
            latency[name][f"speedup_b{n}"] = run.speedup(name, over="teacher")
        int8 = int8_name(args.int8_source)
        if int8 in models and args.int8_source in models:
            latency[int8][f"gain_over_source_b{n}"] = run.speedup(int8, over=args.int8_source)
    for name in models:
        latency[name] |= {"task": task.name, "machine": check_layer_methods.machine(),
                          "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    latency_file.parent.mkdir(parents=True, exist_ok=True)
    latency_file.write_text(json.dumps(latency, indent=2) + "\n")
    return latency


def run_seconds(record: dict) -> float:
    """A run's training wall time; a DynaBERT setting's is its elastic model's (shared by every setting)."""
    return record.get("dynabert_wall_time_s", record.get("wall_time_s")) or 0.0


def task_wall_times(tasks, args, store: ResultStore) -> dict[str, float]:
    """Each task's training wall time in seconds: every recorded run, DynaBERT's elastic model counted once."""
    totals = {}
    for task in tasks:
        seconds = {name: run_seconds(by_seed[args.seed]) for name, by_seed in store.load(task.name).items()
                   if args.seed in by_seed}  # fmt: skip
        elastic = [s for name, s in seconds.items() if name.startswith("dynabert-")]
        totals[task.name] = sum(seconds.values()) - sum(elastic) + max(elastic, default=0.0)
    return totals


def build_rows(tasks, args, store: ResultStore, latency: dict) -> list[dict]:
    recorded = {task.name: store.load(task.name) for task in tasks}
    rows = []
    for name in report_order(args.int8_source):
        per_task = {t.name: recorded[t.name].get(name, {}).get(args.seed) for t in tasks}
        done = {t: r for t, r in per_task.items() if r is not None}
        if not done:
            continue
        scores = {t.name: task_score(t, done[t.name]["eval_results"]) for t in tasks if t.name in done}
        first = next(iter(done.values()))
        rows.append({
            "run": name, "tasks": {t: r["eval_results"] for t, r in done.items()}, "scores": scores,
            "average": statistics.fmean(scores.values()) if len(scores) == len(tasks) else None,
            "layers": first["layers"], "hidden": first["hidden"], "parameters": first["parameters"],
            "size_mb": first["size_mb"], "source": first.get("source"),
            "train_s": sum(run_seconds(r) for r in done.values()),
            **{k: latency.get(name, {}).get(k) for k in ("latency_b1_ms", "latency_b32_ms", "gain_over_source_b1",
                                                         "gain_over_source_b32")},
        })  # fmt: skip
    teacher = next((r for r in rows if r["run"] == "teacher"), None)
    for row in rows:
        row["retention"] = row["average"] / teacher["average"] if teacher and teacher["average"] and row[
            "average"] is not None else None  # fmt: skip
        for n in (1, 32):
            key = f"latency_b{n}_ms"
            ok = teacher and teacher.get(key) and row.get(key)
            medians = teacher[key] / row[key] if ok else None
            row[f"speedup_b{n}"] = latency.get(row["run"], {}).get(f"speedup_b{n}", medians)  # paired when measured
    return rows


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each as a line saying met or missed, from the table's own numbers."""
    by_run = {r["run"]: r for r in rows}
    lines = []
    three_layer = [r for r in rows if r["run"] in DISTILLED and r["retention"] is not None]
    if three_layer:
        best = max(three_layer, key=lambda r: r["retention"])
        met = "met" if best["retention"] >= 0.99 else "**missed**"
        lines.append(f"- Best 3-layer method keeps >= 99% of the teacher's average: {best['run']} keeps "
                     f"{best['retention']:.1%} ({met}).")  # fmt: skip
    base = by_run.get("finetune", {}).get("average")
    if base is not None:
        for r in three_layer:
            met = "met" if r["average"] > base else "**missed**"
            lines.append(f"- {r['run']} beats the no-teacher baseline on the average: {r['average']:.2f} vs "
                         f"{base:.2f} ({met}).")  # fmt: skip
    student = by_run.get("finetune")
    if student and student.get("speedup_b32"):
        ratio = 1 / student["speedup_b32"]
        met = "met" if ratio <= 0.55 else "**missed**"
        lines.append(f"- 3-layer student latency <= 0.55x the teacher's (batch 32): {ratio:.2f}x ({met}).")
    int8 = next((r for r in rows if r["run"].startswith("int8-")), None)
    source = by_run.get(int8["source"]) if int8 else None

    def gain(n: int) -> float | None:
        """INT8's speedup over its source: paired within repeats when measured so, else the ratio of medians."""
        if int8.get(f"gain_over_source_b{n}"):
            return int8[f"gain_over_source_b{n}"]
        key = f"latency_b{n}_ms"
        return source[key] / int8[key] if source.get(key) and int8.get(key) else None

    if source and gain(32):
        lost = {t: source["scores"][t] - int8["scores"][t] for t in int8["scores"] if t in source["scores"]}
        worst = max(lost, key=lost.get)
        met = "met" if gain(32) >= 1.5 and lost[worst] <= 1.0 else "**missed**"
        b1 = f" ({gain(1):.2f}x at batch 1)" if gain(1) else ""
        lines.append(f"- INT8 >= 1.5x faster (batch 32) than its float32 {int8['source']} at <= 1 point lost on every "
                     f"task: {gain(32):.2f}x{b1}, {lost[worst]:+.2f} points lost on {worst} "
                     f"({statistics.fmean(lost.values()):+.2f} on the average) ({met}).")  # fmt: skip
    return lines


def markdown(tasks, rows: list[dict]) -> str:
    header = ["run", "shape", *(f"{t.name} ({'/'.join(t.metrics)})" for t in tasks), "average", "retention",
              "params (M)", "size (MB)", "b1 ms", "b32 ms", "speedup b1", "speedup b32", "train (min)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(value, pattern):
        return pattern.format(value) if value is not None else "n/a"

    for row in rows:
        cells = [
            row["run"],
            f"{row['layers']} x {row['hidden']}",
        ]
        for task in tasks:
            results = row["tasks"].get(task.name)
            cells.append("/".join(f"{100 * results[f'eval_{m}']:.1f}" for m in task.metrics) if results else "n/a")
        cells += [fmt(row["average"], "{:.2f}"), fmt(row["retention"], "{:.1%}"), f"{row['parameters'] / 1e6:.1f}",
                  f"{row['size_mb']:.1f}", fmt(row["latency_b1_ms"], "{:.1f}"), fmt(row["latency_b32_ms"], "{:.0f}"),
                  fmt(row["speedup_b1"], "{:.2f}x"), fmt(row["speedup_b32"], "{:.2f}x"),
                  f"{row['train_s'] / 60:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data", help="Classic GLUE folder ('' for the Hub).")
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=sorted(SUITE_SETTINGS))
    parser.add_argument("--runs", nargs="+", default=RUNS, choices=RUNS, help="Runs to train if missing.")
    parser.add_argument("--model_name_or_path", default=None, help="Teacher base (default: the packaged MiniLM).")
    parser.add_argument("--student_layer_selection", default="uniform", choices=["uniform", "first", "alternate"])
    parser.add_argument("--learning_rate", default="1e-4", help="Every 3-layer student's learning rate.")
    parser.add_argument("--dynabert_learning_rate", default="5e-5")
    parser.add_argument("--seed", default="42")
    parser.add_argument("--output_dir", default="runs/glue_suite", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/glue_suite", help="Result files (small, committed).")
    parser.add_argument("--report", default="docs/glue_suite.md")
    parser.add_argument("--report_only", action="store_true", help="Train nothing; report the recorded runs.")
    parser.add_argument(
        "--reuse_teachers", nargs=2, metavar=("OUTPUT_DIR", "RESULTS_DIR"), default=None,
        help="Copy each task's teacher from another check's folders (e.g. runs/layer_methods results/layer_methods) "
        "when its recorded command is the one this suite would run.",
    )  # fmt: skip
    parser.add_argument(
        "--reuse_dynabert", nargs=2, metavar=("OUTPUT_DIR", "REPORT_JSON"), default=None,
        help="Copy each task's elastic model from scripts/checks/check_dynabert.py's folder (e.g. runs/dynabert3m "
        "docs/dynabert_matched.json) when that check trained it with the suite's DynaBERT recipe and teacher.",
    )  # fmt: skip
    parser.add_argument(
        "--int8_source", default="tinybert", choices=list(DISTILLED),
        help="The distilled student quantized to INT8 on every task (run `int8-<source>`).",
    )  # fmt: skip
    parser.add_argument("--latency_repeats", type=int, default=10)
    parser.add_argument("--max_train_samples", type=int, default=None, help="For a quick trial run only.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="For a quick trial run only.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    tasks = [get_task(name) for name in dict.fromkeys(args.tasks)]
    store = ResultStore(args.results_dir)
    if not args.report_only:
        for task in tasks:
            print(f"== {task.name}", flush=True)
            run_task(task, args, store)

    latency = measure_latency(tasks, args, Path(args.results_dir))
    rows = build_rows(tasks, args, store, latency)
    table = markdown(tasks, rows)
    goals = targets(rows)
    print(table + "\n\n" + "\n".join(goals))
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    plotted = [r for r in rows if r["average"] is not None and r["latency_b32_ms"] is not None]
    if plotted:
        pareto_plot(plotted, report.with_suffix(".png"), title=f"GLUE ({', '.join(t.name for t in tasks)}) dev")
    machines = sorted({r["machine"] for t in tasks for by in store.load(t.name).values() for r in by.values()})
    tasks_text = " ".join(t.name for t in tasks)
    command = f"python scripts/checks/run_glue_suite.py --glue_dir {args.glue_dir} --tasks {tasks_text}"
    for option in ("reuse_teachers", "reuse_dynabert"):  # copies of runs made by the same commands (see the records)
        command += f" --{option} {' '.join(getattr(args, option))}" if getattr(args, option) else ""
    report.write_text(
        "# GLUE suite: every method next to the teacher and the no-teacher baseline\n\n"
        f"Command: `{command}` (resumable; each run's result, command, wall time and machine are in "
        f"`{args.results_dir}/<task>/<run>-seed<seed>.json`).\n\n"
        f"Machines: {'; '.join(machines)}. Budgets per task: "
        + "; ".join(f"{t.name} {budget_text(SUITE_SETTINGS[t.name])}" for t in tasks)
        + f". DynaBERT (every task): the first {DYNABERT_BUDGET['max_train_samples']} training rows, "
        f"{DYNABERT_BUDGET['epochs']} epochs per stage + {DYNABERT_BUDGET['final_epochs']} of final fine-tuning, "
        f"learning rate {args.dynabert_learning_rate}"
        + f". Students: 3 layers from the teacher ({args.student_layer_selection}), learning rate "
        f"{args.learning_rate}, seed {args.seed}. Dev-set scores x 100; the average is over the tasks run, each "
        "task the mean of its metrics; retention is vs the teacher's average. Latency: median forward time on "
        f"{tasks[0].name} dev sentences, all models interleaved in one run; a speedup is the median over the "
        "repeats of the teacher's time over the model's in the same repeat (INT8's gain: over its source's). "
        "Train (min): the run's training wall "
        "time summed over the tasks (a DynaBERT setting: the one elastic model every setting comes from; INT8: "
        "quantization only). Training wall time per task, every run: "
        + ", ".join(f"{name} {seconds / 60:.0f} min" for name, seconds in task_wall_times(tasks, args, store).items())
        + ".\n\n"
        + table
        + "\n\n"
        + ("![metric vs latency and size](" + report.with_suffix(".png").name + ")\n\n" if plotted else "")
        + "## Targets\n\n"
        + "\n".join(goals)
        + "\n"
    )
    return rows


if __name__ == "__main__":
    main()
