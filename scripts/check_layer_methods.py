#!/usr/bin/env python
"""Real-data check of the layer-based methods: on GLUE tasks, a 3-layer student of the fine-tuned packaged MiniLM
distilled by Patient-KD and by DistilBERT against the same 3-layer student fine-tuned without a teacher.

    python scripts/check_layer_methods.py --glue_dir ../shared/glue_data --tasks rte cola

Per task: fine-tune the teacher, then four students with the same steps, seed and learning rate: `finetune` from the
teacher's first 3 layers (Patient-KD's initialisation) vs `pkd`, and `finetune` from layers 0, 2, 4 (DistilBERT's
one-of-two) vs `distilbert`. Every run is a subprocess of the repo's scripts writing into --output_dir; a run whose
eval_results.json exists is skipped, so an interrupted check resumes where it stopped. Writes the table to
--report (markdown) and the numbers to --report with a .json suffix.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from glue_tasks import get_task

REPO = Path(__file__).resolve().parents[1]

# Per task: max_seq_length and epochs, sized for 2 CPU cores (RTE pairs are long, CoLA sentences short).
TASK_SETTINGS = {
    "rte": {"max_seq_length": 128, "epochs": 3},
    "mrpc": {"max_seq_length": 128, "epochs": 3},
    "cola": {"max_seq_length": 64, "epochs": 3},
    "sst2": {"max_seq_length": 64, "epochs": 1},
}

# (run name, --method, --student_layer_selection, the baseline it is compared with)
RUNS = [
    ("finetune-first", "finetune", "first", None),
    ("pkd", "pkd", "first", "finetune-first"),
    ("finetune-alternate", "finetune", "alternate", None),
    ("distilbert", "distilbert", "alternate", "finetune-alternate"),
]


def run(command: list[str], log: Path) -> None:
    print("$", " ".join(command), flush=True)
    start = time.time()
    with open(log, "w", encoding="utf-8") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}); see {log}")
    print(f"  done in {time.time() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=["rte", "cola"])
    parser.add_argument("--output_dir", default="runs/layer_methods")
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--learning_rate", default="1e-4", help="Same for every student.")
    parser.add_argument("--seed", default="42")
    parser.add_argument("--report", default="docs/layer_methods.md")
    args = parser.parse_args(argv)

    rows = []
    for name in args.tasks:
        task = get_task(name)
        settings = TASK_SETTINGS[task.name]
        root = Path(args.output_dir) / task.name
        root.mkdir(parents=True, exist_ok=True)
        common = [
            "--task_name", task.name, "--glue_dir", args.glue_dir, "--max_seq_length", str(settings["max_seq_length"]),
            "--num_train_epochs", str(settings["epochs"]), "--per_device_train_batch_size", "32",
            "--per_device_eval_batch_size", "64", "--seed", args.seed, "--save_steps", "50", "--save_total_limit", "1",
            "--logging_steps", "25", "--disable_tqdm", "true", "--report_to", "none",
        ]  # fmt: skip
        teacher = root / "teacher"
        if not (teacher / "eval_results.json").is_file():
            run([sys.executable, "scripts/finetune_teacher.py", *common, "--learning_rate", "5e-5",
                 "--output_dir", str(teacher)], root / "teacher.log")  # fmt: skip
        results = {"teacher": json.loads((teacher / "eval_results.json").read_text())}
        for run_name, method, selection, _ in RUNS:
            out = root / run_name
            if not (out / "eval_results.json").is_file():
                run([sys.executable, "scripts/distill_glue.py", *common, "--method", method,
                     "--teacher_model_name_or_path", str(teacher), "--student_num_layers", str(args.student_layers),
                     "--student_layer_selection", selection, "--learning_rate", args.learning_rate,
                     "--output_dir", str(out)], root / f"{run_name}.log")  # fmt: skip
            results[run_name] = json.loads((out / "eval_results.json").read_text())
        for run_name, results_of in results.items():
            baseline = next((b for r, _, _, b in RUNS if r == run_name), None)
            score = results_of[f"eval_{task.main_metric}"]
            base_score = results[baseline][f"eval_{task.main_metric}"] if baseline else None
            rows.append({
                "task": task.name, "run": run_name, "metric": task.main_metric, "score": score,
                "baseline": baseline, "baseline_score": base_score,
                "beats_baseline": None if baseline is None else score > base_score,
            })  # fmt: skip

    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = [
        "| task | run | metric | score | baseline | baseline score | beats baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = f"{row['baseline_score']:.4f}" if row["baseline_score"] is not None else ""
        verdict = {None: "", True: "yes", False: "**no**"}[row["beats_baseline"]]
        lines.append(f"| {row['task']} | {row['run']} | {row['metric']} | {row['score']:.4f} | "
                     f"{row['baseline'] or ''} | {base} | {verdict} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=2)
    )
    report.write_text(
        "# Patient-KD and DistilBERT vs the same student without a teacher\n\n"
        f"Command: `python scripts/check_layer_methods.py --glue_dir {args.glue_dir} --tasks {' '.join(args.tasks)}`"
        f"\n\nMachine: {machine}. Teacher: the packaged MiniLM-L6 (6 x 384) fine-tuned per task; students: "
        f"{args.student_layers} layers taken from the teacher, learning rate {args.learning_rate}, seed {args.seed}, "
        "batch 32, same epochs as the teacher. Dev-set scores, one seed each.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
