#!/usr/bin/env python
"""Real-data check of a 12-layer teacher: the packaged all-mpnet-base-v2 (MPNet, 12 x 768, the `mpnet` extra)
fine-tuned on MRPC and STS-B and distilled 12 -> 6 (the papers' own ratio) and 12 -> 3, next to the MiniLM-L6 teacher
and its 3-layer KD student of the feature-loss comparison.

    python scripts/checks/check_mpnet_teacher.py --glue_dir ../shared/glue_data --tasks mrpc stsb

Teacher: `scripts/finetune_teacher.py --packaged_model mpnet`, learning rate 2e-5 (the usual one for a base-size
encoder), seed 42, 3 epochs, batch 32, the task's max_seq_length (check_layer_methods.py's budget). Students take the
teacher's layers by `--student_num_layers D` (uniform, 0-based: 6 layers are 1, 3, ..., 11, 3 layers are 3, 7, 11;
one selection for every run of a depth) and train 3 epochs at learning rate 1e-4, batch 32. Runs per depth `D`:
`finetune-Dl` (labels only, the baseline), `kd-Dl` (logit KD), `pkd-Dl` (Patient-KD, normalised [CLS] of the
mapped layers), `tinybert-Dl` (`--stage both --alpha_attn 0`: MPNet's attention adds a relative position bias that
the score recording does not see, so its attention loss is refused and the run keeps the embedding, hidden-state and
prediction losses) and `nst-Dl` (logit KD + NST on the uniform map, the best loss of the MRPC feature-loss
comparison). By default `finetune`, `kd` and `nst` at both depths, one seed (`--runs` / `--seeds` add the others;
each difference still gets its paired bootstrap interval over the dev rows).

Budget, measured on 2 CPU cores (AMD EPYC with AVX512-BF16, 2026-12-07): the 110 M-parameter teacher trains at
4.5-5.2 rows/s in float32 (MRPC's fine-tuning 2,500 s, STS-B's 3,580 s); the students train under the bf16 speed
lever: a 6-layer `finetune` or `kd` run takes 300-375 s, `nst` (which reads the teacher's hidden states, cached once)
860-1,040 s, a 3-layer run 170-550 s. Each task's default runs take about 1.5-1.9 hours in all, the teacher
included; a further seed of the six students about 45 minutes. The model (405 MB) does not fit the 64 MiB a lent
GPU machine receives, so this check runs where the `mpnet` extra is installed. Resumable per run
(`<results_dir>/<task>/<run>-seed<seed>.json` with the dev predictions; the first seed's checkpoints are kept for
the latency run). After a task's runs, CPU latency of the teacher, the MiniLM-L6 teacher (when its checkpoint is in
`--minilm_dir`) and every student, interleaved in one run of scripts/compare_models.py (each model through its own
tokenizer), is kept in `<results_dir>/<task>/latency.json`. The report (--report, with a .json) is rebuilt after
every run: per run the mean and spread over seeds, the retention of the teacher's score, size and speed, and the
paired bootstrap difference against the fine-tuned student of the same depth and against KD.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "checks"))
sys.path.insert(0, str(REPO / "scripts"))

import check_layer_methods  # noqa: E402
import check_self_distillation  # noqa: E402
import compare_feature_losses  # noqa: E402
import compare_models  # noqa: E402

from bertdistill.results import ResultStore  # noqa: E402
from glue_tasks import get_task  # noqa: E402

TASKS = ("mrpc", "stsb")
DEPTHS = (6, 3)
TEACHER_SEED = "42"
TEACHER_LEARNING_RATE = "2e-5"
METHODS = {
    "finetune": ["--method", "finetune"],
    "kd": ["--method", "kd"],
    "pkd": ["--method", "pkd"],
    "tinybert": ["--method", "tinybert", "--stage", "both", "--alpha_attn", "0"],
    "nst": ["--method", "feature", "--feature_losses", "nst"],
}
RUNS = [f"{method}-{depth}l" for depth in DEPTHS for method in METHODS]
DEFAULT_RUNS = [f"{method}-{depth}l" for depth in DEPTHS for method in ("finetune", "kd", "nst")]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, choices=RUNS)
    parser.add_argument("--seeds", nargs="+", default=["1"])
    parser.add_argument("--learning_rate", default="1e-4", help="The students' learning rate.")
    parser.add_argument("--output_dir", default="runs/mpnet", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/mpnet", help="Result files (committed).")
    parser.add_argument(
        "--minilm_results_dir",
        default="results/feature_losses",
        help="The MiniLM-L6 teacher's and its 3-layer KD student's results (compare_feature_losses.py)",
    )
    parser.add_argument("--minilm_dir", default="runs/feature_losses", help="The MiniLM-L6 teachers' checkpoints.")
    parser.add_argument("--report", default="docs/mpnet_teacher.md")
    parser.add_argument("--latency_repeats", type=int, default=10)
    parser.add_argument("--keep_checkpoints", action="store_true", help="Keep every seed's checkpoint.")
    parser.add_argument("--report_only", action="store_true", help="Rebuild the report from the result files.")
    return parser.parse_args(argv)


def split_run(run: str) -> tuple[str, int]:
    """`"kd-6l"` -> `("kd", 6)`."""
    method, depth = run.rsplit("-", 1)
    return method, int(depth.removesuffix("l"))


def teacher_command(task, args, folder: Path) -> list[str]:
    common = check_layer_methods.common_arguments(task, args.glue_dir, TEACHER_SEED)
    return [sys.executable, "scripts/finetune_teacher.py", *common, "--packaged_model", "mpnet",
            "--learning_rate", TEACHER_LEARNING_RATE, "--output_dir", str(folder)]  # fmt: skip


def run_command(task, run: str, seed: str, args, teacher: Path, folder: Path) -> list[str]:
    method, depth = split_run(run)
    common = check_layer_methods.common_arguments(task, args.glue_dir, seed)
    return [sys.executable, "scripts/distill_glue.py", *common, "--teacher_model_name_or_path", str(teacher),
            "--student_num_layers", str(depth), "--student_layer_selection", "uniform", "--learning_rate",
            args.learning_rate, "--output_dir", str(folder), *METHODS[method]]  # fmt: skip


def ensure_teacher(task, args, store: ResultStore) -> Path:
    """`<output_dir>/<task>/teacher`: the MPNet teacher, fine-tuned now if missing (resumed if interrupted); warns
    when it is not the recorded one (a re-created teacher that came out different)."""
    folder = Path(args.output_dir) / task.name / "teacher"
    command = teacher_command(task, args, folder)
    check_layer_methods.check_trained_seed(folder, TEACHER_SEED)
    seconds = 0.0
    if not (folder / "eval_results.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        seconds = check_layer_methods.run(command, folder.parent / "teacher.log")
    if not store.has(task.name, "teacher", TEACHER_SEED):
        record = check_layer_methods.result_record(task, folder, command, seconds, method="teacher")
        record["dev_predictions"] = compare_feature_losses.dev_predictions(task, folder, args.glue_dir)
        store.save(task.name, "teacher", TEACHER_SEED, record)
    recorded = store.load(task.name)["teacher"][TEACHER_SEED]["score"]
    score = teacher_score(task, folder)
    if abs(score - recorded) > 1e-6:
        print(f"warning: the {task.name} teacher in {folder} scores {score:.4f}, the recorded "
              f"one {recorded:.4f}: students trained now learn from a different teacher", flush=True)  # fmt: skip
    return folder


def teacher_score(task, folder: Path) -> float:
    return json.loads((folder / "eval_results.json").read_text())[f"eval_{task.main_metric}"]


def measure_latency(task, args, store: ResultStore) -> None:
    """CPU latency of the teacher, the MiniLM-L6 teacher and the first seed's student of every run whose checkpoint
    is here, interleaved in one run; kept (merged with earlier measurements) in `<task>/latency.json`."""
    root = Path(args.output_dir) / task.name
    folders = {"teacher": root / "teacher"}
    minilm = Path(args.minilm_dir) / task.name / "teacher"
    if (minilm / "config.json").is_file():
        folders["minilm-teacher"] = minilm
    for run in RUNS:
        kept = [root / f"{run}-seed{seed}" for seed in args.seeds]
        kept = [folder for folder in kept if (folder / "config.json").is_file()]
        if kept:
            folders[run] = kept[0]
    if not (folders["teacher"] / "config.json").is_file() or len(folders) < 2:
        return
    table = compare_models.main(
        [*(str(f) for f in folders.values()), "--task_name", task.name, "--glue_dir", args.glue_dir,
         "--max_seq_length", str(check_layer_methods.TASK_SETTINGS[task.name]["max_seq_length"]),
         "--repeats", str(args.latency_repeats)]
    )  # fmt: skip
    latency = check_layer_methods.recorded_latency(task, Path(args.results_dir))
    for name, row in zip(folders, table):
        latency[name] = {"latency_b1_ms": row["latency_b1_ms"], "latency_b32_ms": row["latency_b32_ms"],
                         "speedup_b32": row["speedup_b32"], "machine": check_layer_methods.machine(),
                         "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    latency_file = Path(args.results_dir) / task.name / "latency.json"
    latency_file.parent.mkdir(parents=True, exist_ok=True)
    latency_file.write_text(json.dumps(latency, indent=2) + "\n")


def minilm_rows(task, args) -> list[dict]:
    """The MiniLM-L6 teacher and its 3-layer KD student (compare_feature_losses.py's runs), for the table."""
    runs, _ = compare_feature_losses.scored_runs(task, ResultStore(args.minilm_results_dir), args.glue_dir)
    rows = []
    for run, label in (("teacher", "minilm-teacher"), ("kd", "minilm-kd-3l")):
        if run in runs:
            first = next(iter(runs[run].values()))
            rows.append(
                {
                    **compare_feature_losses.score_row(runs, run),
                    "run": label,
                    "layers": first["layers"],
                    "hidden": first["hidden"],
                    "parameters": first["parameters"],
                    "size_mb": first["size_mb"],
                }
            )
    return rows


def summary(task, store: ResultStore, args) -> dict:
    runs, references = compare_feature_losses.scored_runs(task, store, args.glue_dir)
    latency = check_layer_methods.recorded_latency(task, Path(args.results_dir))
    teacher = runs.get("teacher", {}).get(TEACHER_SEED)
    rows = []
    for run in ["teacher", *RUNS]:
        if run not in runs:
            continue
        first = next(iter(runs[run].values()))
        row = {**compare_feature_losses.score_row(runs, run), "layers": first["layers"], "hidden": first["hidden"],
               "parameters": first["parameters"], "size_mb": first["size_mb"],
               "wall_time_s": statistics.fmean(r["wall_time_s"] for r in runs[run].values()),
               "machine": first["machine"]}  # fmt: skip
        if run != "teacher":
            _, depth = split_run(run)
            row["vs_finetune"] = compare_feature_losses.comparison(task, runs, run, f"finetune-{depth}l", references)
            row["vs_kd"] = compare_feature_losses.comparison(task, runs, run, f"kd-{depth}l", references)
        rows.append(row)
    minilm = minilm_rows(task, args)
    minilm_teacher = next((r["mean"] for r in minilm if r["run"] == "minilm-teacher"), None)
    for row in rows + minilm:
        reference = minilm_teacher if row["run"].startswith("minilm") else (teacher or {}).get("score")
        row["retention"] = row["mean"] / reference if reference else None
        row.update({k: latency.get(row["run"], {}).get(k) for k in ("latency_b32_ms", "speedup_b32")})
    teacher_scores = sorted({round(r["teacher_score"], 6) for run in RUNS for r in runs.get(run, {}).values()
                             if r.get("teacher_score") is not None})  # fmt: skip
    return {"task": task.name, "metric": task.main_metric, "rows": rows, "minilm": minilm,
            "teacher_scores": teacher_scores}  # fmt: skip


def report(summaries: list[dict], args, argv: list[str]) -> str:
    lines = [
        "# A 12-layer teacher: all-mpnet-base-v2 distilled 12 -> 6 and 12 -> 3",
        "",
        "Produced by `scripts/checks/check_mpnet_teacher.py` (its docstring has the protocol):",
        "",
        "```",
        "python scripts/checks/check_mpnet_teacher.py " + " ".join(argv),
        "```",
        "",
        "The packaged MPNet (12 x 768) fine-tuned on the task (learning rate 2e-5, 3 epochs, batch 32, seed 42); "
        "students of its layers (uniform selection), 3 epochs, learning rate 1e-4, batch 32. Retention: the run's "
        "mean score over the MPNet teacher's (the MiniLM rows: over the MiniLM-L6 teacher's). Differences in metric "
        "points (x100) with a 95% paired bootstrap interval over the dev rows, all common seeds scored on the same "
        "resampled rows; **bold** = the whole interval above 0. Latency: batch 32 on dev sentences, CPU, every model "
        "interleaved in one run through its own tokenizer; speedup over the MPNet teacher.",
        "",
    ]
    for s in summaries:
        if not s["rows"] and not s["minilm"]:
            continue
        lines += [f"## {s['task']} ({s['metric']})", ""]
        if len(s["teacher_scores"]) > 1:
            lines += [f"**Warning**: these students were distilled from teachers of different scores "
                      f"({s['teacher_scores']}): the rows do not share one teacher.", ""]  # fmt: skip
        lines += [
            "| run | shape | params (M) | size (MB) | seeds | mean | std | retention | vs fine-tuned, same depth "
            "| vs KD, same depth | b32 ms | speedup b32 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in s["rows"] + s["minilm"]:
            std = f"{row['std']:.4f}" if row["std"] is not None else ""
            retention = f"{row['retention']:.1%}" if row["retention"] is not None else ""
            latency = f"{row['latency_b32_ms']:.0f}" if row.get("latency_b32_ms") is not None else ""
            speedup = f"{row['speedup_b32']:.2f}x" if row.get("speedup_b32") is not None else ""
            versus = [compare_feature_losses.verdict(row, k) if row.get(k) else "" for k in ("vs_finetune", "vs_kd")]
            lines.append(
                f"| {row['run']} | {row['layers']} x {row['hidden']} | {row['parameters'] / 1e6:.1f} | "
                f"{row['size_mb']:.1f} | {','.join(row['seeds'])} | {row['mean']:.4f} | {std} | {retention} | "
                f"{versus[0]} | {versus[1]} | {latency} | {speedup} |"
            )
        machines = sorted({r["machine"] for r in s["rows"] if r.get("machine")})
        lines += ["", f"Machine (training): {'; '.join(machines) or 'n/a'}.", ""]
    lines += compare_feature_losses.not_run_section(ResultStore(args.results_dir), args.tasks, args.runs, args.seeds)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    store = compare_feature_losses.open_results(args)

    def write_report():
        summarise = functools.partial(summary, store=store, args=args)
        return compare_feature_losses.rebuild_report(args, argv, summarise, report)

    if not args.report_only:
        for task_name in args.tasks:
            task = get_task(task_name)
            measured = (Path(args.results_dir) / task.name / "latency.json").is_file()
            if measured and all(store.has(task.name, r, s) for s in args.seeds for r in args.runs):
                continue  # nothing to train or time: no teacher needed (it takes over an hour to re-create)
            teacher = ensure_teacher(task, args, store)
            write_report()
            trained = False
            for seed in args.seeds:
                for run in args.runs:
                    if store.has(task.name, run, seed):
                        continue
                    folder = Path(args.output_dir) / task.name / f"{run}-seed{seed}"
                    keep = argparse.Namespace(**{**vars(args), "keep_checkpoints": args.keep_checkpoints
                                                 or seed == args.seeds[0]})  # fmt: skip
                    command = run_command(task, run, seed, args, teacher, folder)
                    check_self_distillation.record_run(task, run, seed, command, folder, keep, store,
                                                       teacher_score=teacher_score(task, teacher))  # fmt: skip
                    for stage in ("intermediate", "pretrain"):  # first stages' checkpoints (TinyBERT's)
                        shutil.rmtree(folder.with_name(f"{folder.name}-{stage}"), ignore_errors=True)
                    trained = True
                    write_report()
            if trained or not (Path(args.results_dir) / task.name / "latency.json").is_file():
                measure_latency(task, args, store)
                write_report()  # with the latency columns now, not after the next task's teacher
    return write_report()


if __name__ == "__main__":
    main()
