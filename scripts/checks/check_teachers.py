#!/usr/bin/env python
"""Real-data check of multi-teacher, adversarial and data-free distillation: on MRPC and STS-B, a 3-layer student
of the packaged MiniLM teacher distilled from two teachers at once, with an adversarial loss, or without any
training row, against KD from the better single teacher and against the student fine-tuned alone.

    python scripts/checks/check_teachers.py --glue_dir ../shared/glue_data --tasks mrpc stsb --seeds 1 2 3

The two teachers are the packaged MiniLM fine-tuned by check_layer_methods.py's recipe with seeds 42 (`a`, the one
compare_feature_losses.py uses) and 43 (`b`), trained when missing. Every student takes teacher a's layers 1, 3, 5
(`--student_layers 1,3,5`) and the layer-method budget (3 epochs, learning rate 1e-4, batch 32, the task's
max_seq_length). Runs: `finetune` (labels only), `kd-a`, `kd-b` (logit KD from one teacher), `multi-mean` and
`multi-confidence` (both teachers, mean and CA-MKD weights), `gan_kd` (teacher a, logits), `data_free` (teacher a,
generated embeddings, as many generated rows per epoch as the task has training rows; on STS-B the regression
counterparts of DAFL's class-based losses over the 0-5 range, see bertdistill/data_free.py), `data_free-vocab` (the
same with `--dafl_output vocab`: generated rows are mixtures of the teacher's word embeddings; MRPC only, see
`RUN_TASKS`), `data_free-reference` (`--dafl_reductions reference`: the generator's losses reduced as the authors'
code does), and `start`: the student as built (teacher a's embeddings, layers 1, 3, 5, pooler and head), evaluated
without any training (0 epochs), the point data-free distillation has to improve on without seeing a row. Every run
at its defaults (docs/methods.md) but for the options named.

Resumable per run (`<results_dir>/<task>/<run>-seed<seed>.json` with dev predictions); the report (markdown and
.json) is rebuilt after every run: per run mean and spread over seeds, and the paired bootstrap difference against
`finetune`, against the better single-teacher KD (the one of `kd-a` / `kd-b` with the higher mean) and against
`start`.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "checks"))

import check_layer_methods  # noqa: E402
import check_self_distillation  # noqa: E402
import compare_feature_losses  # noqa: E402

from bertdistill.results import ResultStore  # noqa: E402
from glue_tasks import get_task, glue_metrics, load_glue_split  # noqa: E402

TASKS = ("mrpc", "stsb")
TEACHER_SEEDS = {"a": "42", "b": "43"}
RUNS = {
    "finetune": (["--method", "finetune"], "a"),
    "kd-a": (["--method", "kd"], "a"),
    "kd-b": (["--method", "kd"], "b"),
    "multi-mean": (["--method", "multi_teacher", "--teacher_weighting", "mean"], "ab"),
    "multi-confidence": (["--method", "multi_teacher", "--teacher_weighting", "confidence"], "ab"),
    "gan_kd": (["--method", "gan_kd"], "a"),
    "data_free": (["--method", "data_free"], "a"),
    "data_free-vocab": (["--method", "data_free", "--dafl_output", "vocab"], "a"),
    "data_free-reference": (["--method", "data_free", "--dafl_reductions", "reference"], "a"),
    # argparse keeps an option's last value: this 0 overrides the budget's epochs.
    "start": (["--method", "finetune", "--num_train_epochs", "0"], "a"),
}
# Runs kept to some tasks: the vocabulary generator takes 2.4x data_free's time on STS-B (420 s a run) and its seed 1
# there failed as data_free does (Pearson 0.088); it is MRPC's question, where DAFL's class-based losses apply.
RUN_TASKS = {"data_free-vocab": ("mrpc",)}


def applies(task, run: str) -> bool:
    return task.name in RUN_TASKS.get(run, (task.name,))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    parser.add_argument("--learning_rate", default="1e-4")
    parser.add_argument(
        "--teachers_dir",
        default="runs/feature_losses",
        help="Teacher a lives in <dir>/<task>/teacher (shared with compare_feature_losses.py)",
    )
    parser.add_argument(
        "--second_teachers_dir", default="runs/teachers_seed43", help="Teacher b: <dir>/<task>/teacher"
    )
    parser.add_argument("--output_dir", default="runs/teachers_check", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/teachers_check", help="Result files (committed).")
    parser.add_argument("--report", default="docs/teachers_check.md")
    parser.add_argument("--keep_checkpoints", action="store_true")
    parser.add_argument("--report_only", action="store_true", help="Rebuild the report from the result files.")
    return parser.parse_args(argv)


def run_command(task, run: str, seed: str, args, teachers: dict[str, Path], folder: Path) -> list[str]:
    method, which = RUNS[run]
    common = check_layer_methods.common_arguments(task, args.glue_dir, seed)
    extra = []
    if method[1] == "data_free":  # every data-free variant generates as many rows an epoch as the task has
        train_rows = check_layer_methods.TASK_SETTINGS[task.name].get("max_train_samples") or len(
            load_glue_split(task, "train", args.glue_dir)
        )
        extra = ["--dafl_rows_per_epoch", str(train_rows)]
    return [sys.executable, "scripts/distill_glue.py", *common, "--teacher_model_name_or_path",
            *(str(teachers[w]) for w in which), "--student_layers", "1,3,5", "--learning_rate", args.learning_rate,
            "--output_dir", str(folder), *method, *extra]  # fmt: skip


def summary(task, store: ResultStore, glue_dir: str) -> dict:
    runs, references = compare_feature_losses.scored_runs(task, store, glue_dir)
    means = {run: statistics.fmean(r["score"] for r in runs[run].values()) for run in RUNS if run in runs}
    best_single = max((r for r in ("kd-a", "kd-b") if r in means), key=means.get, default=None)
    rows = []
    for run in RUNS:
        if run not in runs:
            continue
        rows.append({
            **compare_feature_losses.score_row(runs, run),
            "vs_finetune": compare_feature_losses.comparison(task, runs, run, "finetune", references),
            "vs_best_single": compare_feature_losses.comparison(task, runs, run, best_single, references),
            "vs_start": compare_feature_losses.comparison(task, runs, run, "start", references),
            "wall_time_s": statistics.fmean(runs[run][s]["wall_time_s"] for s in runs[run]),
            "machine": next(iter(runs[run].values()))["machine"],
            **(answers(task, runs[run], references) if not task.is_regression else {}),
        })  # fmt: skip
    teachers = {k: runs[f"teacher-{k}"]["42" if k == "a" else "43"]["score"] for k in ("a", "b")
                if f"teacher-{k}" in runs}  # fmt: skip
    return {"task": task.name, "metric": task.main_metric, "rows": rows, "best_single": best_single,
            "teachers": teachers}  # fmt: skip


def answers(task, by_seed: dict, references: np.ndarray) -> dict:
    """A classification run's accuracy and the share of dev rows given its most frequent answer, each the mean over
    seeds: F1 alone hides a student that answers one class for every row (MRPC's F1 of "always paraphrase" is 0.81)."""
    predictions = [np.asarray(r["dev_predictions"]) for r in by_seed.values() if "dev_predictions" in r]
    if not predictions:
        return {}
    return {"accuracy": statistics.fmean(glue_metrics(task, p, references)["accuracy"] for p in predictions),
            "top_answer_share": statistics.fmean(np.bincount(p).max() / len(p) for p in predictions)}  # fmt: skip


def report(summaries: list[dict], args, argv: list[str]) -> str:
    lines = [
        "# Several teachers, adversarial and data-free distillation on real GLUE data",
        "",
        "Produced by `scripts/checks/check_teachers.py` (see its docstring for the protocol):",
        "",
        "```",
        "python scripts/checks/check_teachers.py " + " ".join(argv),
        "```",
        "",
        "A 3-layer student (teacher a's layers 1, 3, 5), 3 epochs, learning rate 1e-4, batch 32 for every run. "
        "Differences in metric points (x100) with a 95% paired bootstrap interval over the dev rows, all common seeds "
        "scored on the same resampled rows; **bold** = the whole interval above 0.",
        "",
    ]
    lines += compare_feature_losses.against_finetune_figure(summaries, args.report)
    for s in summaries:
        if not s["rows"]:
            continue
        teachers = ", ".join(f"teacher {k} {v:.4f}" for k, v in s["teachers"].items())
        classes = any("accuracy" in row for row in s["rows"])
        lines += [
            f"## {s['task']} ({s['metric']}{'; ' + teachers if teachers else ''})",
            "",
            f"| run | seeds | mean | std | {'accuracy | top answer | ' if classes else ''}vs finetune | "
            f"vs the better single teacher ({s['best_single']}) | vs start (not trained) | wall time (s) |",
            "|---|---|---|---|---|---|---|---|" + ("---|---|" if classes else ""),
        ]
        for row in s["rows"]:
            std = f"{row['std']:.4f}" if row["std"] is not None else ""
            shares = ""
            if classes:
                accuracy, top = row.get("accuracy"), row.get("top_answer_share")
                shares = f"{accuracy:.4f} | {top:.0%} | " if accuracy is not None else " |  | "
            lines.append(
                f"| {row['run']} | {','.join(row['seeds'])} | {row['mean']:.4f} | {std} | {shares}"
                f"{compare_feature_losses.verdict(row, 'vs_finetune')} | "
                f"{compare_feature_losses.verdict(row, 'vs_best_single')} | "
                f"{compare_feature_losses.verdict(row, 'vs_start')} | {row['wall_time_s']:.0f} |"
            )
        lines += ["", f"Machine: {s['rows'][0]['machine']}."]
        if classes:
            lines += ["Accuracy and top answer (the share of dev rows given the run's most frequent answer): means "
                      "over seeds, for reading the main metric; the intervals are on the main metric."]  # fmt: skip
        lines += [""]
    lines += compare_feature_losses.not_run_section(
        ResultStore(args.results_dir), args.tasks, args.runs, args.seeds, applies
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    store = compare_feature_losses.open_results(args)

    def write_report():
        summarise = functools.partial(summary, store=store, glue_dir=args.glue_dir)
        summaries = compare_feature_losses.rebuild_report(args, argv, summarise, report)
        title = "Several teachers, GAN-KD and data-free against the student fine-tuned alone"
        compare_feature_losses.plot_against_finetune(summaries, args.report, title)
        return summaries

    if not args.report_only:
        for task_name in args.tasks:
            task = get_task(task_name)
            teachers = {}
            for key, root in (("a", args.teachers_dir), ("b", args.second_teachers_dir)):
                seed = TEACHER_SEEDS[key]
                teachers[key] = check_layer_methods.ensure_teacher(task, args.glue_dir, Path(root), seed)
                if not store.has(task.name, f"teacher-{key}", seed):
                    command = check_layer_methods.teacher_command(
                        check_layer_methods.common_arguments(task, args.glue_dir, seed), teachers[key]
                    )
                    store.save(task.name, f"teacher-{key}", seed,
                               check_layer_methods.result_record(task, teachers[key], command, 0.0))  # fmt: skip
            for seed in args.seeds:
                for run in args.runs:
                    if store.has(task.name, run, seed) or not applies(task, run):
                        continue
                    start = time.time()
                    folder = Path(args.output_dir) / task.name / f"{run}-seed{seed}"
                    command = run_command(task, run, seed, args, teachers, folder)
                    check_self_distillation.record_run(task, run, seed, command, folder, args, store)
                    if time.time() - start > 1:
                        write_report()
    return write_report()


if __name__ == "__main__":
    main()
