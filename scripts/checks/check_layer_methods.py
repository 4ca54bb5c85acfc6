#!/usr/bin/env python
"""Real-data check of the layer-based methods: on GLUE tasks, 3-layer students of the fine-tuned packaged MiniLM
distilled by Patient-KD, DistilBERT and TinyBERT against the same students fine-tuned without a teacher, plus a
narrower TinyBERT student (4 layers x hidden 192) with its size and speed.

    python scripts/checks/check_layer_methods.py --glue_dir ../shared/glue_data --tasks rte cola mrpc

Per task: fine-tune the teacher, then every run of RUNS (or of --runs) with the same steps, seed and learning rate:
`finetune` from the teacher's first 3 layers (Patient-KD's initialisation) vs `pkd`, `finetune` from layers 0, 2, 4
(DistilBERT's one-of-two) vs `distilbert`, `finetune` from layers 1, 3, 5 (uniform) vs `tinybert --stage both`
(its prediction stage has the baseline's epochs; the intermediate stage comes on top), and a random-init 4 x 192
student with and without TinyBERT. Every student run is repeated for each of --seeds (the teacher is trained once,
with --teacher_seed); a run and its baseline share seeds, and a method beats its baseline when its mean over the
seeds both have is higher.

Every run is a subprocess of the repo's scripts writing its checkpoint into --output_dir. When it finishes, its
result (metrics, parameters, size, command, wall time, machine) is written to --results_dir as
`<task>/<run>-seed<seed>.json`; those small files are committed, a run with a result file is never trained again,
and an interrupted check resumes where it stopped, in this session or a later one. The report is rebuilt from every
result file of the given tasks (also from earlier invocations with other --runs or --seeds); CPU latency is measured
by scripts/compare_models.py on the checkpoints present (all models of a task interleaved in one run) and kept in
`<task>/latency.json` for runs whose checkpoints are gone. The report goes to --report (markdown) and, with the raw
numbers, to the same path with a .json suffix.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from glue_tasks import get_task

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))  # compare_models, a user entry point

import compare_models  # noqa: E402

from bertdistill.benchmark import count_parameters, size_on_disk  # noqa: E402
from bertdistill.results import ResultStore, summarise  # noqa: E402

# Per task: max_seq_length and epochs, sized for 2 CPU cores (RTE/MRPC pairs are long, CoLA sentences short).
# Only through the Hub (no local copy here; --glue_dir ""): a slice of their large training sets (the suite's too).
HUB_ONLY_TASKS = ("qnli", "qqp", "mnli")
HUB_ONLY_SETTINGS = {"max_seq_length": 128, "epochs": 1, "max_train_samples": 20000}
TASK_SETTINGS = {
    "rte": {"max_seq_length": 128, "epochs": 3},
    "mrpc": {"max_seq_length": 128, "epochs": 3},
    "cola": {"max_seq_length": 64, "epochs": 3},
    "sst2": {"max_seq_length": 64, "epochs": 3, "max_train_samples": 8000},  # 67k rows: a budget for 2 cores
    "stsb": {"max_seq_length": 128, "epochs": 3},
    **dict.fromkeys(HUB_ONLY_TASKS, HUB_ONLY_SETTINGS),
}

NARROW = ["--student_num_layers", "4", "--student_hidden_size", "192", "--student_num_attention_heads", "12",
          "--student_intermediate_size", "768"]  # fmt: skip


@dataclass(frozen=True)
class CheckRun:
    name: str
    method: str
    args: list[str] = field(default_factory=list)
    baseline: str | None = None  # the run it has to beat


RUNS = [
    CheckRun("finetune-first", "finetune", ["--student_layer_selection", "first"]),
    CheckRun("pkd", "pkd", ["--student_layer_selection", "first"], "finetune-first"),
    CheckRun("finetune-alternate", "finetune", ["--student_layer_selection", "alternate"]),
    CheckRun("distilbert", "distilbert", ["--student_layer_selection", "alternate"], "finetune-alternate"),
    # The earlier defaults (cosine loss as heavy as KD + CE), kept to show what the reference recipe's ratio changed.
    CheckRun(
        "distilbert-cos1",
        "distilbert",
        ["--student_layer_selection", "alternate", "--alpha_kd", "0.5", "--alpha_ce", "0.5", "--alpha_cos", "1.0"],
        "finetune-alternate",
    ),
    # The cosine loss on every student layer against the teacher layer it was initialised from (the issue's "mapped
    # layers" option), at the reference weight and at weight 1.
    CheckRun(
        "distilbert-layers",
        "distilbert",
        ["--student_layer_selection", "alternate", "--layer_map", "one-of-two"],
        "finetune-alternate",
    ),
    CheckRun(
        "distilbert-layers-cos1",
        "distilbert",
        ["--student_layer_selection", "alternate", "--layer_map", "one-of-two", "--alpha_cos", "1.0"],
        "finetune-alternate",
    ),
    CheckRun("finetune-uniform", "finetune", ["--student_layer_selection", "uniform"]),
    CheckRun("tinybert", "tinybert", ["--student_layer_selection", "uniform", "--stage", "both"], "finetune-uniform"),
    CheckRun("finetune-narrow", "finetune", [*NARROW, "--learning_rate", "3e-4"]),
    # 6 -> 4 layers is not a uniform multiple: student layer m learns teacher layer round(1.5 m), halves rounded up.
    CheckRun(
        "tinybert-narrow",
        "tinybert",
        [*NARROW, "--learning_rate", "3e-4", "--stage", "both", "--layer_map", "1:2,2:3,3:5,4:6"],
        "finetune-narrow",
    ),
]
RUN_NAMES = [r.name for r in RUNS]


def run(command: list[str], log: Path) -> float:
    """Run a subprocess of the repo with its output in `log`; returns its wall time in seconds, added up over the
    attempts when an earlier one was interrupted or failed (the command resumes from its checkpoints; the log keeps
    every attempt's output).

    `<log>.time.json` keeps the earlier attempts' seconds and the current attempt's start; an attempt that never
    came back (killed with its session) is counted up to the last write to `log`, which the training writes to
    throughout. After a successful run the next call starts the count afresh (a new training)."""
    print("$", " ".join(command), flush=True)
    clock = log.with_name(log.name + ".time.json")
    spent = 0.0
    earlier = json.loads(clock.read_text()) if clock.is_file() else {"succeeded": True}
    if not earlier["succeeded"]:
        spent = earlier["seconds"]
        if earlier["started"] is not None and log.is_file():
            spent += max(0.0, log.stat().st_mtime - earlier["started"])
    start = time.time()
    clock.write_text(json.dumps({"seconds": spent, "started": start, "succeeded": False}))
    with open(log, "a" if spent else "w", encoding="utf-8") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = spent + time.time() - start
    clock.write_text(json.dumps({"seconds": seconds, "started": None, "succeeded": not result.returncode}))
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}); see {log}")
    print(f"  done in {seconds:.0f} s", flush=True)
    return seconds


def file_digest(path: Path) -> str:
    """The sha256 of a file (model weights), to tell whether two runs used the same ones."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def common_arguments(task, glue_dir: str, seed: str, settings: dict | None = None) -> list[str]:
    """distill_glue.py / finetune_teacher.py arguments shared by every run of a task; `settings` (default: this
    check's TASK_SETTINGS) holds `max_seq_length`, `epochs` and optionally `max_train_samples`."""
    settings = settings or TASK_SETTINGS[task.name]
    budget = ["--max_train_samples", str(settings["max_train_samples"])] if settings.get("max_train_samples") else []
    return [
        "--task_name", task.name, "--glue_dir", glue_dir, "--max_seq_length", str(settings["max_seq_length"]),
        "--num_train_epochs", str(settings["epochs"]), "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "64", "--seed", seed, "--save_steps", "50", "--save_total_limit", "1",
        "--logging_steps", "25", "--disable_tqdm", "true", "--report_to", "none", *budget,
    ]  # fmt: skip


def result_record(task, folder: Path, command: list[str], seconds: float, **extra) -> dict:
    """What a finished run leaves in the result store: its dev metrics, shape, size and how it was obtained."""
    metrics = json.loads((folder / "eval_results.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return {
        "metric": task.main_metric,
        "score": metrics[f"eval_{task.main_metric}"],
        "eval_results": metrics,
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "parameters": count_parameters(model),
        "size_mb": size_on_disk(folder) / 2**20,
        "command": " ".join(command[1:]),
        "wall_time_s": round(seconds),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        **extra,
    }


def check_trained_seed(folder: Path, seed: str) -> None:
    """Refuse a finished run folder that was trained with another seed: recording it under `seed` would pass one
    seed's result off as another's. The seed is read from the Trainer's `training_args.bin` in the folder."""
    args_file = folder / "training_args.bin"
    if not args_file.is_file():
        return
    trained = torch.load(args_file, weights_only=False).seed  # the Trainer's own pickle of its TrainingArguments
    if str(trained) != str(seed):
        raise ValueError(
            f"{folder} holds a run trained with seed {trained}, not {seed}: give each seed its own output folder, or "
            "delete the folder to retrain it"
        )


def train_and_record(task, store: ResultStore, run_name: str, seed: str, command: list[str], folder: Path, **extra):
    """Train (unless the checkpoint finished before) and record the result; nothing happens when it is recorded."""
    if store.has(task.name, run_name, seed):
        return
    check_trained_seed(folder, seed)
    seconds = 0.0
    if not (folder / "eval_results.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        seconds = run(command, folder.parent / f"{folder.name}.log")
    store.save(task.name, run_name, seed, result_record(task, folder, command, seconds, **extra))


def teacher_command(common: list[str], teacher: Path) -> list[str]:
    """The command that fine-tunes a task's teacher into `teacher` (the packaged MiniLM unless `common` names a
    --model_name_or_path). `--regression_head_init zero`: the recipe every recorded teacher was trained with (before
    the label-mean start became the default), so a re-created STS-B teacher is the recorded one."""
    return [sys.executable, "scripts/finetune_teacher.py", *common, "--learning_rate", "5e-5",
            "--regression_head_init", "zero", "--output_dir", str(teacher)]  # fmt: skip


def ensure_teacher(
    task, glue_dir: str, output_root: Path, seed: str, store: ResultStore | None = None, common: list | None = None
) -> Path:
    """`<output_root>/<task>/teacher`: the packaged MiniLM fine-tuned on the task (trained now if missing), its
    result recorded in `store` when one is given. `common`: the run arguments (default: `common_arguments`)."""
    teacher = output_root / task.name / "teacher"
    common = common if common is not None else common_arguments(task, glue_dir, seed)
    command = teacher_command(common, teacher)
    if store is not None and not store.has(task.name, "teacher", seed):
        check_trained_seed(teacher, seed)
    if not (teacher / "eval_results.json").is_file():
        teacher.parent.mkdir(parents=True, exist_ok=True)
        seconds = run(command, teacher.parent / "teacher.log")
        if store is not None and not store.has(task.name, "teacher", seed):
            store.save(task.name, "teacher", seed, result_record(task, teacher, command, seconds, method="teacher"))
    elif store is not None and not store.has(task.name, "teacher", seed):
        store.save(task.name, "teacher", seed, result_record(task, teacher, command, 0.0, method="teacher"))
    if store is not None:
        recorded = json.loads(store.path(task.name, "teacher", seed).read_text())["score"]
        score = json.loads((teacher / "eval_results.json").read_text())[f"eval_{task.main_metric}"]
        if abs(recorded - score) > 1e-6:
            print(
                f"warning: the {task.name} teacher in {teacher} scores {score:.4f}, the recorded one {recorded:.4f}: "
                "students trained now are distilled from a different teacher",
                flush=True,
            )
    return teacher


def recorded_latency(task, store_dir: Path) -> dict:
    """`{run: latency record}` from `<task>/latency.json` (empty when nothing was measured)."""
    latency_file = store_dir / task.name / "latency.json"
    return json.loads(latency_file.read_text()) if latency_file.is_file() else {}


def measure_latency(task, root: Path, store_dir: Path, runs: dict[str, dict], glue_dir: str, repeats: int) -> dict:
    """Latency of every run whose checkpoint is present (its first seed's folder), interleaved with the teacher in
    one run; runs measured in an earlier session keep their numbers from `<task>/latency.json`."""
    latency_file = store_dir / task.name / "latency.json"
    latency = recorded_latency(task, store_dir)
    present = {}
    for run_name, by_seed in runs.items():
        seed = min(by_seed, key=lambda s: (len(s), s))
        folder = root / "teacher" if run_name == "teacher" else root / run_name / f"seed{seed}"
        if (folder / "config.json").is_file():
            present[run_name] = folder
    if "teacher" in present and len(present) > 1:
        ordered = ["teacher", *(n for n in present if n != "teacher")]
        table = compare_models.main(
            [*(str(present[n]) for n in ordered), "--task_name", task.name, "--glue_dir", glue_dir,
             "--max_seq_length", str(TASK_SETTINGS[task.name]["max_seq_length"]), "--repeats", str(repeats)]
        )  # fmt: skip
        for run_name, row in zip(ordered, table):
            latency[run_name] = {
                "latency_b1_ms": row["latency_b1_ms"], "latency_b32_ms": row["latency_b32_ms"],
                "speedup_b32": row["speedup_b32"], "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            }  # fmt: skip
        latency_file.parent.mkdir(parents=True, exist_ok=True)
        latency_file.write_text(json.dumps(latency, indent=2) + "\n")
    return latency


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=["rte", "cola", "mrpc"], choices=sorted(TASK_SETTINGS))
    parser.add_argument("--runs", nargs="+", default=RUN_NAMES, choices=RUN_NAMES, help="Runs to train if missing.")
    parser.add_argument("--seeds", nargs="+", default=["42"], help="Every student run is repeated with each seed.")
    parser.add_argument("--teacher_seed", default="42")
    parser.add_argument("--output_dir", default="runs/layer_methods", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/layer_methods", help="Result files (small, committed).")
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--learning_rate", default="1e-4", help="Same for every student (unless a run sets its own).")
    parser.add_argument("--report", default="docs/layer_methods.md")
    parser.add_argument(
        "--report_only", action="store_true", help="Train and measure nothing; report the recorded runs."
    )
    parser.add_argument("--latency_repeats", type=int, default=10)
    args = parser.parse_args(argv)
    tasks = list(dict.fromkeys(args.tasks))
    store = ResultStore(args.results_dir)
    baselines = {r.name: r.baseline for r in RUNS}

    rows = []
    # The report covers every task with recorded results; only the tasks asked for train and measure latency.
    reported = [n for n in TASK_SETTINGS if n in set(store.tasks()) | set(tasks)]
    for name in reported:
        task = get_task(name)
        root = Path(args.output_dir) / task.name
        if not args.report_only and name in tasks:
            teacher = ensure_teacher(task, args.glue_dir, Path(args.output_dir), args.teacher_seed, store)
            teacher_score = store.load(task.name)["teacher"][args.teacher_seed]["score"]
            for seed in dict.fromkeys(args.seeds):
                for check_run in (r for r in RUNS if r.name in args.runs):
                    out = root / check_run.name / f"seed{seed}"
                    # A run's own arguments come last so that they win (argparse keeps the last value).
                    command = [sys.executable, "scripts/distill_glue.py",
                               *common_arguments(task, args.glue_dir, seed), "--method", check_run.method,
                               "--teacher_model_name_or_path", str(teacher),
                               "--student_num_layers", str(args.student_layers), "--learning_rate",
                               args.learning_rate, "--output_dir", str(out), *check_run.args]  # fmt: skip
                    train_and_record(task, store, check_run.name, seed, command, out, method=check_run.method,
                                     baseline=check_run.baseline, teacher_score=teacher_score)  # fmt: skip
        recorded = store.load(task.name)
        order = ["teacher", *RUN_NAMES]
        recorded = {n: recorded[n] for n in sorted(recorded, key=lambda n: order.index(n) if n in order else 99)}
        store_dir = Path(args.results_dir)
        if name in tasks and not args.report_only:
            latency = measure_latency(task, root, store_dir, recorded, args.glue_dir, args.latency_repeats)
        else:
            latency = recorded_latency(task, store_dir)
        summaries = summarise(
            {n: {s: r["score"] for s, r in by_seed.items()} for n, by_seed in recorded.items()}, baselines
        )
        for run_name, summary in summaries.items():
            first = recorded[run_name][summary.seeds[0]]
            rows.append({
                "task": task.name, "run": run_name, "metric": first["metric"], "seeds": summary.seeds,
                "scores": summary.scores, "score": summary.mean, "std": summary.std,
                "baseline": summary.baseline, "paired_seeds": summary.paired_seeds,
                "paired_score": summary.paired_score, "baseline_score": summary.paired_baseline_score,
                "beats_baseline": summary.beats_baseline, "layers": first["layers"], "hidden": first["hidden"],
                "parameters": first["parameters"], "size_mb": first["size_mb"],
                **{k: latency.get(run_name, {}).get(k) for k in ("latency_b1_ms", "latency_b32_ms", "speedup_b32")},
            })  # fmt: skip

    table = markdown_table(rows)
    print(table)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    machines = sorted({r["machine"] for n in reported for by in store.load(n).values() for r in by.values()})
    seeds = sorted({s for n in reported for by in store.load(n).values() for s in by}, key=lambda s: (len(s), s))
    report.write_text(
        "# Layer-based distillation vs the same student without a teacher\n\n"
        f"Commands: `python scripts/checks/check_layer_methods.py --glue_dir {args.glue_dir} --tasks TASK --runs RUN "
        f"--seeds SEED` for every row below (tasks {', '.join(reported)}; seeds {', '.join(seeds)}; the exact command "
        f"of each run is in `{args.results_dir}/<task>/<run>-seed<seed>.json` with its result, wall time and "
        f"machine); `--report_only` rebuilds this report from those files. Resumable: a recorded run is never "
        "retrained.\n\n"
        f"Machines: {'; '.join(machines)}. Teacher: the packaged MiniLM-L6 (6 x 384) fine-tuned per task (seed "
        f"{args.teacher_seed}); students: {args.student_layers} layers taken from the teacher (learning rate "
        f"{args.learning_rate}) or a random-init 4 x 192 student (learning rate 3e-4); batch 32, the teacher's "
        "epochs (TinyBERT `--stage both` runs an intermediate stage of the same length first). Dev-set scores: the "
        "mean over the seeds run (± the standard deviation over seeds when there are several); a method is compared "
        "with its baseline over the seeds both have. Latency: median forward time at batch 32 on dev sentences, the "
        "models of a task interleaved in one run; speedup vs the teacher.\n\n" + table + "\n"
    )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| task | run | shape | metric | seeds | score | baseline | baseline score | beats baseline | params (M) "
        "| size (MB) | b32 latency (ms) | speedup b32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score = f"{row['score']:.4f}" + (f" ± {row['std']:.4f}" if row["std"] is not None else "")
        paired = row["paired_seeds"] or []
        base = f"{row['baseline_score']:.4f}" if row["baseline_score"] is not None else ""
        if paired and len(paired) != len(row["seeds"]):
            base += f" (vs {statistics.fmean(row['scores'][row['seeds'].index(s)] for s in paired):.4f}, seeds "
            base += f"{' '.join(paired)})"
        verdict = {None: "", True: "yes", False: "**no**"}[row["beats_baseline"]]
        latency = f"{row['latency_b32_ms']:.0f}" if row["latency_b32_ms"] is not None else "n/a"
        speedup = f"{row['speedup_b32']:.2f}x" if row["speedup_b32"] is not None else "n/a"
        lines.append(
            f"| {row['task']} | {row['run']} | {row['layers']} x {row['hidden']} | {row['metric']} | "
            f"{' '.join(row['seeds'])} | {score} | {row['baseline'] or ''} | {base} | {verdict} | "
            f"{row['parameters'] / 1e6:.1f} | {row['size_mb']:.1f} | {latency} | {speedup} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
