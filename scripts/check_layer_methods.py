#!/usr/bin/env python
"""Real-data check of the layer-based methods: on GLUE tasks, 3-layer students of the fine-tuned packaged MiniLM
distilled by Patient-KD, DistilBERT and TinyBERT against the same students fine-tuned without a teacher, plus a
narrower TinyBERT student (4 layers x hidden 192) with its size and speed.

    python scripts/check_layer_methods.py --glue_dir ../shared/glue_data --tasks rte cola mrpc

Per task: fine-tune the teacher, then every run of RUNS (or of --runs) with the same steps, seed and learning rate:
`finetune` from the teacher's first 3 layers (Patient-KD's initialisation) vs `pkd`, `finetune` from layers 0, 2, 4
(DistilBERT's one-of-two) vs `distilbert`, `finetune` from layers 1, 3, 5 (uniform) vs `tinybert --stage both`
(its prediction stage has the baseline's epochs; the intermediate stage comes on top), and a random-init 4 x 192
student with and without TinyBERT. Every run is a subprocess of the repo's scripts writing into --output_dir; a run
whose eval_results.json exists is skipped, so an interrupted check resumes where it stopped. The report lists every
finished run of the given tasks (also ones from earlier invocations with other --runs), with parameters, size on
disk and CPU latency measured by scripts/compare_models.py; it goes to --report (markdown) and, with the raw
numbers, to the same path with a .json suffix.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from glue_tasks import get_task

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import compare_models  # noqa: E402

# Per task: max_seq_length and epochs, sized for 2 CPU cores (RTE/MRPC pairs are long, CoLA sentences short).
TASK_SETTINGS = {
    "rte": {"max_seq_length": 128, "epochs": 3},
    "mrpc": {"max_seq_length": 128, "epochs": 3},
    "cola": {"max_seq_length": 64, "epochs": 3},
    "sst2": {"max_seq_length": 64, "epochs": 1},
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
    CheckRun("finetune-uniform", "finetune", ["--student_layer_selection", "uniform"]),
    CheckRun("tinybert", "tinybert", ["--student_layer_selection", "uniform", "--stage", "both"], "finetune-uniform"),
    CheckRun("finetune-narrow", "finetune", [*NARROW, "--learning_rate", "3e-4"]),
    CheckRun(
        "tinybert-narrow", "tinybert", [*NARROW, "--learning_rate", "3e-4", "--stage", "both"], "finetune-narrow"
    ),
]
RUN_NAMES = [r.name for r in RUNS]


def run(command: list[str], log: Path) -> None:
    print("$", " ".join(command), flush=True)
    start = time.time()
    with open(log, "w", encoding="utf-8") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}); see {log}")
    print(f"  done in {time.time() - start:.0f} s", flush=True)


def common_arguments(task, glue_dir: str, seed: str) -> list[str]:
    """distill_glue.py / finetune_teacher.py arguments shared by every run of a task."""
    settings = TASK_SETTINGS[task.name]
    return [
        "--task_name", task.name, "--glue_dir", glue_dir, "--max_seq_length", str(settings["max_seq_length"]),
        "--num_train_epochs", str(settings["epochs"]), "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "64", "--seed", seed, "--save_steps", "50", "--save_total_limit", "1",
        "--logging_steps", "25", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip


def ensure_teacher(task, glue_dir: str, output_root: Path, seed: str) -> Path:
    """`<output_root>/<task>/teacher`: the packaged MiniLM fine-tuned on the task (trained now if missing)."""
    teacher = output_root / task.name / "teacher"
    if not (teacher / "eval_results.json").is_file():
        teacher.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "scripts/finetune_teacher.py", *common_arguments(task, glue_dir, seed),
             "--learning_rate", "5e-5", "--output_dir", str(teacher)], teacher.parent / "teacher.log")  # fmt: skip
    return teacher


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=["rte", "cola", "mrpc"], choices=sorted(TASK_SETTINGS))
    parser.add_argument("--runs", nargs="+", default=RUN_NAMES, choices=RUN_NAMES, help="Runs to train if missing.")
    parser.add_argument("--output_dir", default="runs/layer_methods")
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--learning_rate", default="1e-4", help="Same for every student (unless a run sets its own).")
    parser.add_argument("--seed", default="42")
    parser.add_argument("--report", default="docs/layer_methods.md")
    parser.add_argument("--report_only", action="store_true", help="Train nothing; report the finished runs.")
    parser.add_argument("--latency_repeats", type=int, default=10)
    args = parser.parse_args(argv)
    tasks = list(dict.fromkeys(args.tasks))

    rows, sizes = [], {}
    for name in tasks:
        task = get_task(name)
        settings = TASK_SETTINGS[task.name]
        root = Path(args.output_dir) / task.name
        root.mkdir(parents=True, exist_ok=True)
        common = common_arguments(task, args.glue_dir, args.seed)
        teacher = root / "teacher"
        if not args.report_only:
            ensure_teacher(task, args.glue_dir, Path(args.output_dir), args.seed)
        for check_run in RUNS:
            out = root / check_run.name
            if not args.report_only and check_run.name in args.runs and not (out / "eval_results.json").is_file():
                # A run's own arguments come last so that they win (argparse keeps the last value).
                run([sys.executable, "scripts/distill_glue.py", *common, "--method", check_run.method,
                     "--teacher_model_name_or_path", str(teacher), "--student_num_layers", str(args.student_layers),
                     "--learning_rate", args.learning_rate, "--output_dir", str(out), *check_run.args],
                    root / f"{check_run.name}.log")  # fmt: skip
        finished = {"teacher": teacher} | {
            r.name: root / r.name for r in RUNS if (root / r.name / "eval_results.json").is_file()
        }
        results = {n: json.loads((path / "eval_results.json").read_text()) for n, path in finished.items()}
        table = compare_models.main(
            [*map(str, finished.values()), "--task_name", task.name, "--glue_dir", args.glue_dir,
             "--max_seq_length", str(settings["max_seq_length"]), "--repeats", str(args.latency_repeats)]
        )  # fmt: skip
        sizes[task.name] = dict(zip(finished, table))
        for run_name in finished:
            baseline = next((r.baseline for r in RUNS if r.name == run_name), None)
            score = results[run_name][f"eval_{task.main_metric}"]
            base_score = results[baseline][f"eval_{task.main_metric}"] if baseline in results else None
            row = sizes[task.name][run_name]
            rows.append({
                "task": task.name, "run": run_name, "metric": task.main_metric, "score": score,
                "baseline": baseline, "baseline_score": base_score,
                "beats_baseline": None if base_score is None else score > base_score,
                "layers": row["layers"], "hidden": row["hidden"], "parameters": row["parameters"],
                "size_mb": row["size_mb"], "latency_b1_ms": row["latency_b1_ms"],
                "latency_b32_ms": row["latency_b32_ms"], "speedup_b32": row["speedup_b32"],
            })  # fmt: skip

    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = [
        "| task | run | shape | metric | score | baseline | baseline score | beats baseline | params (M) | size (MB) "
        "| b32 latency (ms) | speedup b32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = f"{row['baseline_score']:.4f}" if row["baseline_score"] is not None else ""
        verdict = {None: "", True: "yes", False: "**no**"}[row["beats_baseline"]]
        lines.append(
            f"| {row['task']} | {row['run']} | {row['layers']} x {row['hidden']} | {row['metric']} | "
            f"{row['score']:.4f} | {row['baseline'] or ''} | {base} | {verdict} | {row['parameters'] / 1e6:.1f} | "
            f"{row['size_mb']:.1f} | {row['latency_b32_ms']:.0f} | {row['speedup_b32']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=2)
    )
    report.write_text(
        "# Layer-based distillation vs the same student without a teacher\n\n"
        f"Command: `python scripts/check_layer_methods.py --glue_dir {args.glue_dir} --tasks {' '.join(tasks)}`"
        f"\n\nMachine: {machine}. Teacher: the packaged MiniLM-L6 (6 x 384) fine-tuned per task; students: "
        f"{args.student_layers} layers taken from the teacher (learning rate {args.learning_rate}) or a random-init "
        f"4 x 192 student (learning rate 3e-4); seed {args.seed}, batch 32, the teacher's epochs (TinyBERT "
        "`--stage both` runs an intermediate stage of the same length first). Dev-set scores, one seed each. "
        "Latency: median forward time at batch 32 on dev sentences, all models of a task interleaved in one run; "
        "speedup vs the teacher.\n\n" + table + "\n"
    )
    return rows


if __name__ == "__main__":
    main()
