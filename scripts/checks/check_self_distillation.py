#!/usr/bin/env python
"""Real-data check of the teacher-free and online schemes: on GLUE tasks, a 3-layer network taken from the packaged
(pre-trained, not fine-tuned) MiniLM, trained by CS-KD, BYOT, DDGSD, DML, ONE and knowledge grafting, against the same
network fine-tuned alone; DML and ONE also against offline KD from the fine-tuned teacher into that network; BYOT's
early-exit curve against fixed-depth networks fine-tuned alone.

    python scripts/checks/check_self_distillation.py --glue_dir ../shared/glue_data --tasks mrpc stsb sst2 \\
        --seeds 1 2 3

Every network is `--student_layers_from <packaged MiniLM> --student_layers 1,3,5`, trained with the
layer-method check's budget: 3 epochs, learning rate 1e-4, batch 32, the task's max_seq_length (SST-2: its first
8,000 rows). `finetune` is that network on the labels alone, `kd` the same network distilled from the task's
fine-tuned teacher (check_layer_methods.py's recipe, trained when missing, as in compare_feature_losses.py);
`dml`'s peer and `grafting`'s second network take layers 0, 2, 4; `one` has 3 branches of the last layer; `byot`
exits after layers 1 and 2 (and 3). Each scheme runs at its paper's defaults (see docs/methods.md);
`one-new-heads` is ONE with freshly drawn branch classifiers (`--one_new_heads`), `one-ce-only` (MRPC only) ONE without
its KD term (`--alpha_kd 0`), `one-no-ensemble-ce` (MRPC only) ONE without the gated ensemble's CE
(`--one_ensemble_weight 0`) and `one-independent` (MRPC only: 2 branches sharing only the embeddings, trained by
their own CEs alone): runs that ask why ONE trails the network trained alone on MRPC;
`ddgsd-no-distortion` (STS-B only: `--ddgsd_rate 0`, the views differ by dropout alone), `ddgsd-no-views` (STS-B
only: `--alpha_kd 0`, without the views' consistency term), `ddgsd-no-mmd` (STS-B only: `--ddgsd_mmd_weight 0`),
`ddgsd-ce-only` (STS-B only: none of the three, two dropout views on the labels) and `grafting-same-layers`
(every task: the second network also from layers 1, 3, 5, the paper's shared initialisation) ask what costs DDGSD and
grafting most on STS-B.
CS-KD and the early-exit curve need classes: STS-B runs neither. `finetune-1l` / `finetune-2l` are the 1- and
2-layer networks of MiniLM's layers 1 / 1, 3 (what BYOT's first two exits sit on) fine-tuned alone: the fixed depths
the early-exit curve is compared with.

STS-B's untrained regression heads start at the training labels' mean (distill_glue.py's default
`--regression_head_init label_mean`); `--regression_head_init zero --results_dir results/self_distillation_zero_head`
reproduces the runs recorded before that default, in which BYOT collapsed (docs/self_distillation_notes.md).

Resumable per run (`<results_dir>/<task>/<run>-seed<seed>.json` with dev predictions; checkpoints deleted after
recording unless --keep_checkpoints); the report (markdown and .json) is rebuilt after every run: per run the mean
and spread over seeds and the paired bootstrap difference against `finetune` (and `kd` for DML and ONE) over the dev
rows; for BYOT, the entropy-threshold sweep (metric, mean layers used, batch-1 latency) averaged over seeds next to
the fixed-depth networks.
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

from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "checks"))

import check_layer_methods  # noqa: E402
import compare_feature_losses  # noqa: E402

from bertdistill.early_exit import early_exit_sweep  # noqa: E402
from bertdistill.glue_run import packaged_minilm_path, tokenize_split  # noqa: E402
from bertdistill.plots import early_exit_plot  # noqa: E402
from bertdistill.results import ResultStore  # noqa: E402
from bertdistill.task_head import REGRESSION_HEAD_INITS  # noqa: E402
from glue_tasks import get_task, load_glue_split  # noqa: E402

TASKS = ("mrpc", "stsb", "sst2")
RUNS = {
    "finetune": ["--method", "finetune"],
    "kd": ["--method", "kd"],
    "cskd": ["--method", "cskd"],
    "byot": ["--method", "byot", "--exit_layers", "1,2"],
    "ddgsd": ["--method", "ddgsd"],
    "dml": ["--method", "dml", "--dml_peer_layers", "0,2,4"],
    "one": ["--method", "one", "--one_branches", "3"],
    "grafting": ["--method", "grafting", "--graft_peer_layers", "0,2,4"],
    # ONE with the paper's independently initialised branch heads, and (MRPC only) ONE without its KD term: what
    # makes ONE worse than the network trained alone on MRPC (docs/self_distillation_notes.md)?
    "one-new-heads": ["--method", "one", "--one_branches", "3", "--one_new_heads", "true"],
    "one-ce-only": ["--method", "one", "--one_branches", "3", "--alpha_kd", "0"],
    "one-no-ensemble-ce": ["--method", "one", "--one_branches", "3", "--one_ensemble_weight", "0"],
    # ONE reduced to its branches' CEs with nothing shared but the embeddings: is the remaining cost the shared layers
    # under several branch CEs, or something else in ONE's forward?
    "one-independent": ["--method", "one", "--one_branches", "2", "--one_shared_layers", "0"]
    + ["--alpha_kd", "0", "--one_ensemble_weight", "0"],
    # (DDGSD: STS-B only) what costs DDGSD and grafting most on STS-B: the distorted views or the consistency term;
    # grafting across networks that start from different pre-trained layers (every task: the paper's networks share
    # their initialisation)
    "ddgsd-no-distortion": ["--method", "ddgsd", "--ddgsd_rate", "0"],
    "ddgsd-no-views": ["--method", "ddgsd", "--alpha_kd", "0"],
    "ddgsd-no-mmd": ["--method", "ddgsd", "--ddgsd_mmd_weight", "0"],
    "ddgsd-ce-only": ["--method", "ddgsd", "--ddgsd_rate", "0", "--alpha_kd", "0", "--ddgsd_mmd_weight", "0"],
    "grafting-same-layers": ["--method", "grafting", "--graft_peer_layers", "1,3,5"],
    "finetune-1l": ["--method", "finetune"],
    "finetune-2l": ["--method", "finetune"],
}
TEACHER_RUNS = ("finetune", "kd", "finetune-1l", "finetune-2l")  # their methods take a teacher (finetune: unused)
CLASSIFICATION_ONLY = ("cskd", "finetune-1l", "finetune-2l")
AGAINST_KD = ("dml", "one", "one-new-heads")
# diagnostic runs, on the task that raised their question
ONLY_ON = {
    **dict.fromkeys(("one-ce-only", "one-no-ensemble-ce", "one-independent"), ("mrpc",)),
    **dict.fromkeys(("ddgsd-no-distortion", "ddgsd-no-views", "ddgsd-no-mmd", "ddgsd-ce-only"), ("stsb",)),
}
# dense near 1: on MRPC most rows' normalised entropy is above 0.7, so the curve's middle lies there
EXIT_THRESHOLDS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0]
# BYOT's exits after its layers 1 and 2 compute what networks of MiniLM's layers 1 and 1, 3 compute
NETWORK_LAYERS = {"finetune-1l": "1", "finetune-2l": "1,3"}  # every other run: "1,3,5"
# the networks trained alone at the depths of BYOT's exits
TRAINED_ALONE = {
    run: len(NETWORK_LAYERS.get(run, "1,3,5").split(",")) for run in ("finetune-1l", "finetune-2l", "finetune")
}
LATENCY_ROWS = 100


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    parser.add_argument("--learning_rate", default="1e-4")
    parser.add_argument(
        "--regression_head_init", default="label_mean", choices=REGRESSION_HEAD_INITS,
        help="Where STS-B's untrained heads start (distill_glue.py's option; zero: the runs before it existed).",
    )  # fmt: skip
    parser.add_argument("--base_model", default=None, help="The encoder the networks take layers of (default: the "
                        "packaged MiniLM, the demo extra)")  # fmt: skip
    parser.add_argument("--teachers", nargs="+", default=[], help="task=folder (default: trained by the recipe)")
    parser.add_argument(
        "--teachers_dir",
        default="runs/feature_losses",
        help="Where recipe teachers live (<dir>/<task>/teacher), shared with compare_feature_losses",
    )
    parser.add_argument("--output_dir", default="runs/self_distillation", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/self_distillation", help="Result files (committed).")
    parser.add_argument("--report", default="docs/self_distillation.md")
    parser.add_argument("--keep_checkpoints", action="store_true")
    parser.add_argument("--report_only", action="store_true", help="Rebuild the report from the result files.")
    args = parser.parse_args(argv)
    if args.base_model is None and not args.report_only:
        args.base_model = packaged_minilm_path()
    teachers = {}
    for item in args.teachers:
        task, sep, folder = item.partition("=")
        if not sep or not Path(folder, "config.json").is_file():
            raise ValueError(f"--teachers takes task=folder of a fine-tuned teacher, got {item!r}")
        teachers[task] = Path(folder)
    return args, teachers


def applies(task, run: str) -> bool:
    return not (task.is_regression and run in CLASSIFICATION_ONLY) and task.name in ONLY_ON.get(run, (task.name,))


def run_command(task, run: str, seed: str, args, teacher: Path | None, folder: Path) -> list[str]:
    layers = NETWORK_LAYERS.get(run, "1,3,5")
    common = check_layer_methods.common_arguments(task, args.glue_dir, seed)
    source = ["--teacher_model_name_or_path", str(teacher)] if run in TEACHER_RUNS else []
    # only when asked: the default leaves the commands as they were recorded before the option existed
    head_start = ["--regression_head_init", "zero"] if args.regression_head_init == "zero" else []
    return [sys.executable, "scripts/distill_glue.py", *common, *source, "--student_layers_from",
            args.base_model, "--student_layers", layers, "--learning_rate", args.learning_rate,
            "--output_dir", str(folder), *RUNS[run], *head_start]  # fmt: skip


def exit_sweep(task, folder: Path, glue_dir: str) -> list[dict]:
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = check_layer_methods.TASK_SETTINGS[task.name]["max_seq_length"]
    dev = tokenize_split(load_glue_split(task, task.eval_splits[0], glue_dir), task, tokenizer, max_length)
    return early_exit_sweep(model, dev, tokenizer, task, "entropy", EXIT_THRESHOLDS, latency_rows=LATENCY_ROWS)


def record_run(task, run: str, seed: str, command: list[str], folder: Path, args, store: ResultStore, **extra):
    """Train `command` into `folder` (resumed if interrupted, skipped if finished) and record its result with its
    dev predictions, final loss terms and the scores of the other networks it saved (DML's peer, ONE's branches);
    `extra` goes into the record. The checkpoint is deleted afterwards unless `args.keep_checkpoints`."""
    check_layer_methods.check_trained_seed(folder, seed)
    seconds = 0.0
    if not (folder / "eval_results.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        seconds = check_layer_methods.run(command, folder.parent / f"{folder.name}.log")
    record = check_layer_methods.result_record(task, folder, command, seconds, method=run, **extra)
    record["dev_predictions"] = compare_feature_losses.dev_predictions(task, folder, args.glue_dir)
    record["final_losses"] = compare_feature_losses.final_losses(folder)
    for name in ("peer_1", "branch_2", "branch_3"):
        if (folder / name / "eval_results.json").is_file():
            scores = json.loads((folder / name / "eval_results.json").read_text())
            record[f"{name}_score"] = scores[f"eval_{task.main_metric}"]
    if run == "byot" and not task.is_regression:
        record["early_exit"] = exit_sweep(task, folder, args.glue_dir)
    store.save(task.name, run, seed, record)
    if not args.keep_checkpoints:
        shutil.rmtree(folder, ignore_errors=True)


def train(task, run: str, seed: str, args, teacher_of, store: ResultStore) -> None:
    """Train and record one run unless it is recorded or does not apply; `teacher_of()` gives the task's teacher
    (trained on first call, so a task whose teacher runs are all recorded never trains it again)."""
    if store.has(task.name, run, seed) or not applies(task, run):
        return
    teacher = teacher_of() if run in TEACHER_RUNS else None
    folder = Path(args.output_dir) / task.name / f"{run}-seed{seed}"
    extra = {}
    if run in ("kd", "finetune"):
        extra["teacher_score"] = json.loads((teacher / "eval_results.json").read_text())[f"eval_{task.main_metric}"]
    record_run(task, run, seed, run_command(task, run, seed, args, teacher, folder), folder, args, store, **extra)


def curve(runs: dict) -> list[dict]:
    """BYOT's sweep averaged over the seeds that have one: per setting (in the order of the longest sweep) the mean
    score, layers and latency, and how many seeds measured it."""
    sweeps = [{row["setting"]: row for row in r["early_exit"]} for r in runs.get("byot", {}).values()
              if r.get("early_exit")]  # fmt: skip
    if not sweeps:
        return []
    rows = []
    for row in max(sweeps, key=len).values():
        same = [sweep[row["setting"]] for sweep in sweeps if row["setting"] in sweep]
        rows.append({
            "setting": row["setting"], "kind": row["kind"], "threshold": row["threshold"], "seeds": len(same),
            "score": statistics.fmean(r["score"] for r in same),
            "mean_layers": statistics.fmean(r["mean_layers"] for r in same),
            "latency_b1_ms": statistics.fmean(r["latency_b1_ms"] for r in same),
        })  # fmt: skip
    return rows


def trained_alone_rows(summary: dict) -> list[dict]:
    """The networks fine-tuned alone at BYOT's exit depths, as rows of its early-exit table and plot; latency is the
    BYOT exit's of the same depth (a truncated exit is that network's architecture)."""
    latency = {r["setting"]: r["latency_b1_ms"] for r in summary["early_exit"]}
    rows = {row["run"]: row for row in summary["rows"]}
    return [
        {"setting": f"{run} (trained alone)", "kind": "trained_alone", "threshold": None,
         "seeds": len(rows[run]["seeds"]), "score": rows[run]["mean"], "mean_layers": depth,
         "latency_b1_ms": latency[f"exit {depth} (fixed depth)"]}
        for run, depth in TRAINED_ALONE.items()
        if run in rows and f"exit {depth} (fixed depth)" in latency
    ]  # fmt: skip


def summary(task, store: ResultStore, glue_dir: str) -> dict:
    runs, references = compare_feature_losses.scored_runs(task, store, glue_dir)
    rows = []
    for run in RUNS:
        if run not in runs:
            continue
        rows.append({
            **compare_feature_losses.score_row(runs, run),
            "vs_finetune": compare_feature_losses.comparison(task, runs, run, "finetune", references),
            "vs_kd": compare_feature_losses.comparison(task, runs, run, "kd", references) if run in AGAINST_KD
            else None,
            "other_networks": {k: statistics.fmean(r[k] for r in runs[run].values() if k in r)
                               for k in ("peer_1_score", "branch_2_score", "branch_3_score")
                               if any(k in r for r in runs[run].values())},
            "wall_time_s": statistics.fmean(runs[run][s]["wall_time_s"] for s in runs[run]),
            "machine": next(iter(runs[run].values()))["machine"],
        })  # fmt: skip
    teacher = next((r["teacher_score"] for r in runs.get("kd", {}).values() if "teacher_score" in r), None)
    return {"task": task.name, "metric": task.main_metric, "rows": rows, "teacher_score": teacher,
            "early_exit": curve(runs)}  # fmt: skip


def report(summaries: list[dict], args, argv: list[str]) -> str:
    lines = [
        "# Teacher-free and online schemes on real GLUE data",
        "",
        "Produced by `scripts/checks/check_self_distillation.py` (see its docstring for the protocol):",
        "",
        "```",
        "python scripts/checks/check_self_distillation.py " + " ".join(argv),
        "```",
        "",
        "A 3-layer network from the packaged MiniLM-L6 (layers 1, 3, 5, not fine-tuned), 3 epochs, learning rate "
        "1e-4, batch 32 for every run. Differences are in metric points (x100) with a 95% paired bootstrap interval "
        "over the dev rows, all common seeds scored on the same resampled rows; **bold** = the whole interval above "
        "0.",
        "",
    ]
    lines += compare_feature_losses.against_finetune_figure(summaries, args.report)
    for s in summaries:
        if not s["rows"]:
            continue
        teacher = f"; teacher {s['teacher_score']:.4f}" if s["teacher_score"] is not None else ""
        lines += [
            f"## {s['task']} ({s['metric']}{teacher})",
            "",
            "| run | seeds | mean | std | vs finetune | vs kd | other networks | wall time (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in s["rows"]:
            std = f"{row['std']:.4f}" if row["std"] is not None else ""
            others = ", ".join(f"{k.removesuffix('_score')} {v:.4f}" for k, v in row["other_networks"].items())
            lines.append(
                f"| {row['run']} | {','.join(row['seeds'])} | {row['mean']:.4f} | {std} | "
                f"{compare_feature_losses.verdict(row, 'vs_finetune')} | "
                f"{compare_feature_losses.verdict(row, 'vs_kd') if row['vs_kd'] else ''} | {others} | "
                f"{row['wall_time_s']:.0f} |"
            )
        if s["early_exit"]:
            alone = trained_alone_rows(s)
            lines += [
                "",
                "BYOT early exit (entropy threshold), each row the mean over the seeds it was measured on, next to "
                "the networks of the same depths trained alone (`finetune-1l`, `finetune-2l`, `finetune`; their "
                "latency is the BYOT exit's of the same depth: the same architecture):",
                "",
                "| setting | seeds | score | mean layers | latency b1 (ms) |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['setting']} | {r['seeds']} | {r['score']:.4f} | {r['mean_layers']:.2f} | "
                f"{r['latency_b1_ms']:.2f} |"
                for r in s["early_exit"] + alone
            ]
            plot = Path(args.report).with_name(f"self_distillation_{s['task']}_early_exit.png")
            early_exit_plot(s["early_exit"] + alone, plot, f"{s['metric']} (x 100)",
                            f"{s['task']} dev: BYOT early exit")  # fmt: skip
            lines += ["", f"![early exit]({plot.name})"]
        lines += ["", f"Machine: {s['rows'][0]['machine']}.", ""]
    lines += compare_feature_losses.not_run_section(ResultStore(args.results_dir), args.tasks, args.runs, args.seeds,
                                                    applies)  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args, teachers = parse(argv)
    store = compare_feature_losses.open_results(args)

    def write_report():
        summarise = functools.partial(summary, store=store, glue_dir=args.glue_dir)
        summaries = compare_feature_losses.rebuild_report(args, argv, summarise, report)
        title = "Teacher-free and online schemes against the network fine-tuned alone"
        compare_feature_losses.plot_against_finetune(summaries, args.report, title)
        return summaries

    if not args.report_only:
        for task_name in args.tasks:
            task = get_task(task_name)

            @functools.cache
            def teacher_of(task=task) -> Path:
                return teachers.get(task.name) or check_layer_methods.ensure_teacher(
                    task, args.glue_dir, Path(args.teachers_dir), compare_feature_losses.TEACHER_SEED,
                    ResultStore(Path(args.results_dir).parent / "feature_losses"),
                )  # fmt: skip

            for seed in args.seeds:
                for run in args.runs:
                    start = time.time()
                    train(task, run, seed, args, teacher_of, store)
                    if time.time() - start > 1:
                        write_report()
    return write_report()


if __name__ == "__main__":
    main()
