#!/usr/bin/env python
"""Real-data comparison of the intermediate-knowledge losses: on GLUE tasks, a 3-layer student of the fine-tuned
packaged MiniLM distilled by logit KD plus each feature loss, against logit KD alone and against the same student
fine-tuned without a teacher.

    python scripts/checks/compare_feature_losses.py --glue_dir ../shared/glue_data --tasks mrpc stsb sst2 --seeds 1 2 3

The teachers: the packaged MiniLM fine-tuned on each task by check_layer_methods.py's recipe (seed 42, lr 5e-5, 3
epochs, the task's budget) into `<output_dir>/<task>/teacher`, trained first when missing (a new machine re-creates
the same teacher: the recipe is deterministic on CPU, and every result records its teacher's score; the report warns
when a task's runs do not share one). `--teachers task=folder` uses another.

Every student takes teacher layers by `--student_num_layers 3` (the same layers for every run) and trains with the
same budget: 3 epochs, learning rate 1e-4, batch 32, the task's max_seq_length (scripts/checks/check_layer_methods.py's
TASK_SETTINGS; SST-2: its first 8,000 rows). `kd` is `--method kd` (0.5 CE + 0.5 KD at T = 2); each `feature-<loss>` is
`--method feature --feature_losses <loss>` on the `uniform` layer map (student layer m from teacher layer 2m) with
the loss's default weight, on top of that same KD; FitNet, AB and FT first run their 1-epoch pre-training stage
(`--pretrain_num_train_epochs 1`), which comes on top of the 3 epochs. `finetune` is the student on the labels alone.

A finished run leaves `<results_dir>/<task>/<run>-seed<seed>.json` (metric, dev predictions, command, wall time,
machine) and its checkpoint is deleted (--keep_checkpoints keeps it); a run with a result file is never trained again
and an interrupted one resumes from its last checkpoint, so the comparison can be run over several sessions. The
report (markdown, and the raw numbers as .json) is rebuilt from the result files after every run: per task and run the
mean and spread over seeds, and the difference from `kd` and from `finetune` with a paired bootstrap interval over
the dev rows (all common seeds scored on the same resampled rows, `glue_tasks.paired_bootstrap`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "checks"))

import check_layer_methods  # noqa: E402

from bertdistill.glue_run import evaluate_model, tokenize_split  # noqa: E402
from bertdistill.losses import MATCH_LOSSES, default_feature, get_match_loss  # noqa: E402
from bertdistill.plots import interval_plot  # noqa: E402
from bertdistill.results import ResultStore  # noqa: E402
from glue_tasks import get_task, glue_metrics, load_glue_split, paired_bootstrap  # noqa: E402

FEATURE_LOSSES = ["fitnet", "at", "sp", "rkd", "pkt", "cc", "nst", "fsp", "vid", "ft", "ab"]
RUNS = {
    "finetune": ["--method", "finetune"],
    "kd": ["--method", "kd"],
    **{f"feature-{name}": ["--method", "feature", "--feature_losses", name, "--pretrain_num_train_epochs", "1"]
       for name in FEATURE_LOSSES},
}  # fmt: skip
TASKS = ("mrpc", "stsb", "sst2")
BOOTSTRAP_RESAMPLES = 2000
TEACHER_SEED = "42"
NEGLIGIBLE_POINTS = 0.1  # a difference (in metric points) the summary marks `tiny`


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue_dir", default="../shared/glue_data")
    parser.add_argument(
        "--teachers",
        nargs="+",
        default=[],
        help="task=folder of a fine-tuned teacher; a task without one gets <output_dir>/<task>/teacher, trained "
        "when missing by check_layer_methods.py's recipe (seed 42, lr 5e-5, the task's budget) and recorded as "
        "<results_dir>/<task>/teacher-seed42.json",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--learning_rate", default="1e-4")
    parser.add_argument("--output_dir", default="runs/feature_losses", help="Checkpoints (large, not committed).")
    parser.add_argument("--results_dir", default="results/feature_losses", help="Result files (committed).")
    parser.add_argument("--report", default="docs/feature_losses.md")
    parser.add_argument("--keep_checkpoints", action="store_true")
    parser.add_argument("--report_only", action="store_true", help="Rebuild the report from the result files.")
    args = parser.parse_args(argv)
    teachers = {}
    for item in args.teachers:
        task, sep, folder = item.partition("=")
        if not sep or not Path(folder, "config.json").is_file():
            raise ValueError(f"--teachers takes task=folder of a fine-tuned teacher, got {item!r}")
        teachers[task] = Path(folder)
    return args, teachers


def dev_predictions(task, folder: Path, glue_dir: str) -> list:
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = check_layer_methods.TASK_SETTINGS[task.name]["max_seq_length"]
    dev = tokenize_split(load_glue_split(task, task.eval_splits[0], glue_dir), task, tokenizer, max_length)
    _, predictions = evaluate_model(model, dev, tokenizer, task, return_predictions=True)
    return predictions


def final_losses(folder: Path, last: int = 3) -> dict[str, float]:
    """Each logged loss component's mean over the run's last `last` training logs (weights included): how large a
    feature loss's term ended up next to KD's at its default weight."""
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        return {}
    logs = [row for row in json.loads(state_file.read_text())["log_history"] if "loss" in row][-last:]
    names = sorted({k for row in logs for k in row if k.startswith("loss_")})
    return {name: statistics.fmean(float(row[name]) for row in logs if name in row) for name in names}


def train(task, run: str, seed: str, args, teacher: Path, store: ResultStore) -> None:
    if store.has(task.name, run, seed):
        return
    folder = Path(args.output_dir) / task.name / f"{run}-seed{seed}"
    common = check_layer_methods.common_arguments(task, args.glue_dir, seed)
    command = [sys.executable, "scripts/distill_glue.py", *common, "--teacher_model_name_or_path", str(teacher),
               "--student_num_layers", str(args.student_layers), "--learning_rate", args.learning_rate,
               "--output_dir", str(folder), *RUNS[run]]  # fmt: skip
    seconds = 0.0
    if not (folder / "eval_results.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        seconds = check_layer_methods.run(command, folder.parent / f"{folder.name}.log")
    record = check_layer_methods.result_record(task, folder, command, seconds, method=run)
    record["dev_predictions"] = dev_predictions(task, folder, args.glue_dir)
    record["final_losses"] = final_losses(folder)
    record["teacher"] = str(teacher)
    record["teacher_score"] = json.loads((teacher / "eval_results.json").read_text())[f"eval_{task.main_metric}"]
    store.save(task.name, run, seed, record)
    if not args.keep_checkpoints:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(folder.with_name(folder.name + "-pretrain"), ignore_errors=True)


_INTERVALS: dict[str, dict] = {}
_INTERVALS_FILE: list[Path] = []  # where the memo is kept between processes (see use_interval_file)


def use_interval_file(path: Path) -> None:
    """Keep the bootstrap intervals in `path` (JSON) as well, so that a new process (a new session, a report
    rebuild) reuses those computed before instead of spending about 10 s per interval again."""
    _INTERVALS_FILE[:] = [Path(path)]
    _INTERVALS.clear()
    if Path(path).is_file():
        try:
            _INTERVALS.update(json.loads(Path(path).read_text()))
        except json.JSONDecodeError:
            print(f"warning: {path} is not valid JSON (an interrupted write?): its intervals are computed again")


def comparison(task, runs: dict, run: str, against: str, references: np.ndarray) -> dict | None:
    """The paired bootstrap of `run` against `against` over the seeds both have. Memoised on the predictions
    themselves (and kept in the file of [`use_interval_file`]): the report is rebuilt after every run, and only the
    intervals whose inputs changed are computed again (2000 resamples of every pair took minutes per rebuild)."""
    if against not in runs or run == against:
        return None
    seeds = sorted(set(runs[run]) & set(runs[against]))
    if not seeds:
        return None
    a = np.array([runs[run][s]["dev_predictions"] for s in seeds])
    b = np.array([runs[against][s]["dev_predictions"] for s in seeds])
    digest = hashlib.sha256(a.tobytes() + b"|" + b.tobytes() + b"|" + np.asarray(references).tobytes()).hexdigest()
    key = f"{task.name}/{BOOTSTRAP_RESAMPLES}/{digest}"
    if key not in _INTERVALS:
        interval = paired_bootstrap(task, a, b, references, n_resamples=BOOTSTRAP_RESAMPLES)
        _INTERVALS[key] = {"seeds": seeds, **{k: float(v) for k, v in interval.items()}}
        for path in _INTERVALS_FILE:  # written aside and renamed: a run killed mid-write leaves the old file whole
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(_INTERVALS, indent=0, sort_keys=True) + "\n")
            os.replace(partial, path)
    return dict(_INTERVALS[key])


def term_sizes(run: str, by_seed: dict) -> dict[str, float]:
    """The feature term's and KD's final logged values (weighted), averaged over the seeds that recorded them."""
    recorded = [r["final_losses"] for r in by_seed.values() if r.get("final_losses")]
    feature = run.removeprefix("feature-")
    sizes = {}
    for key, name in (("feature", f"loss_{feature}"), ("kd", "loss_kd")):
        values = [losses[name] for losses in recorded if name in losses]
        if values and run != "finetune":
            sizes[key] = statistics.fmean(values)
    return sizes


def score_row(runs: dict, run: str) -> dict:
    """A run's scores over its seeds: `run`, `seeds`, `mean`, `std` (`None` for one seed), `scores`."""
    seeds = sorted(runs[run])
    scores = [runs[run][s]["score"] for s in seeds]
    return {"run": run, "seeds": seeds, "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else None, "scores": scores}  # fmt: skip


def scored_runs(task, store: ResultStore, glue_dir: str) -> tuple[dict, np.ndarray]:
    """A task's result records (`{run: {seed: record}}`) and its dev labels, every record that kept its dev
    predictions scored on them: `score` becomes the main metric of the saved checkpoint's predictions, the very rows
    the intervals resample, so that a table's means and its intervals agree. The training run's own evaluation is kept
    as `training_eval_score`; it can differ by a row or two (it ran under the run's bf16 autocast when that lever was
    on, the saved checkpoint is scored in float32)."""
    runs = store.load(task.name)
    references = np.array(load_glue_split(task, task.eval_splits[0], glue_dir)["label"])
    for by_seed in runs.values():
        for record in by_seed.values():
            if "dev_predictions" in record:
                record["training_eval_score"] = record["score"]
                record["score"] = glue_metrics(task, np.asarray(record["dev_predictions"]), references)[
                    task.main_metric
                ]
    return runs, references


def summary(task, store: ResultStore, glue_dir: str) -> dict:
    runs, references = scored_runs(task, store, glue_dir)
    rows = []
    for run in RUNS:
        if run not in runs:
            continue
        first = next(iter(runs[run].values()))
        rows.append({
            **score_row(runs, run),
            "vs_kd": comparison(task, runs, run, "kd", references),
            "vs_finetune": comparison(task, runs, run, "finetune", references),
            "wall_time_s": statistics.fmean(runs[run][s]["wall_time_s"] for s in runs[run]),
            "final_losses": term_sizes(run, runs[run]),
            "teacher_score": first.get("teacher_score"),
            "machine": first["machine"],
        })  # fmt: skip
    teacher_scores = sorted({round(r["teacher_score"], 6) for run in RUNS for r in runs.get(run, {}).values()
                             if r.get("teacher_score") is not None})  # fmt: skip
    return {"task": task.name, "metric": task.main_metric, "rows": rows, "teacher_scores": teacher_scores}


def verdict(row: dict, key: str) -> str:
    c = row[key]
    if c is None:
        return ""
    text = f"{c['difference'] * 100:+.2f} [{c['low'] * 100:+.2f}, {c['high'] * 100:+.2f}]"
    if c["low"] > 0:
        return f"**{text}** better"
    if c["high"] < 0:
        return f"{text} worse"
    return text


def report(summaries: list[dict], args, argv: list[str]) -> str:
    lines = [
        "# Intermediate-knowledge losses on real GLUE data",
        "",
        "Produced by `scripts/checks/compare_feature_losses.py` (see its docstring for the protocol):",
        "",
        "```",
        "python scripts/checks/compare_feature_losses.py " + " ".join(argv),
        "```",
        "",
        "A 3-layer student of the packaged MiniLM-L6 teacher (its layers taken by `--student_num_layers 3`), 3 "
        "epochs, "
        "learning rate 1e-4, batch 32, for every run; `kd` = 0.5 CE + 0.5 KD (T = 2); `feature-<loss>` = the same KD "
        "plus the loss on the `uniform` layer map (student layer m from teacher layer 2m) at its default weight "
        "(FitNet, AB, FT: plus their 1-epoch pre-training stage). Differences are in metric points (x100) with a 95% "
        "paired bootstrap interval over the dev rows, all common seeds scored on the same resampled rows; **bold** = "
        "the whole interval above 0. `final term / KD`: the feature loss's logged term (weight included) and KD's "
        "(before its 0.5) over the last training logs, i.e. how much the default weight made the term count. Every "
        "score is the saved (float32) checkpoint's on the dev rows, the predictions the intervals resample.",
        "",
    ]
    shown = [s for s in summaries if s["rows"]]
    if shown:
        lines += [
            "## Against logit KD, per task",
            "",
            "The difference from `kd` in points and the verdict of its interval: better (above 0), worse (below 0), "
            "or = (the interval spans 0: indistinguishable at this budget and number of seeds); `tiny` marks a "
            f"difference under {NEGLIGIBLE_POINTS} points whatever its interval (a term too light to change the "
            "student: the runs are nearly KD's own). The last column counts the tasks: better / = / worse (a tiny "
            "one counts as =).",
            "",
            "| loss | " + " | ".join(f"{s['task']} (seeds)" for s in shown) + " | better / = / worse |",
            "|---|" + "---|" * (len(shown) + 1),
        ]
        for name in FEATURE_LOSSES:
            cells, counts = [], {"better": 0, "=": 0, "worse": 0}
            for s in shown:
                row = next((r for r in s["rows"] if r["run"] == f"feature-{name}"), None)
                c = row["vs_kd"] if row else None
                if c is None:
                    cells.append("")
                    continue
                word = "better" if c["low"] > 0 else "worse" if c["high"] < 0 else "="
                tiny = ", tiny" if abs(c["difference"] * 100) < NEGLIGIBLE_POINTS else ""
                counts["=" if tiny else word] += 1
                cells.append(f"{c['difference'] * 100:+.2f} {word}{tiny} ({len(c['seeds'])})")
            tally = " / ".join(str(n) for n in counts.values())
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {tally} |")
        plot = Path(args.report).with_suffix(".png").name
        lines += [
            "",
            f"![Each loss's difference from kd per task, 95% interval; filled: excludes 0]({plot})",
            "",
            "The same as a plot: filled markers where the interval excludes 0, open where it spans 0.",
            "",
        ]
    for s in summaries:
        if not s["rows"]:
            continue
        teacher = s["rows"][0]["teacher_score"]
        lines += [
            f"## {s['task']} ({s['metric']}; teacher {teacher:.4f})",
            "",
            "| run | seeds | mean | std | vs kd | vs finetune | final term / KD | wall time (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        if len(s["teacher_scores"]) > 1:
            lines[-3:-3] = [
                f"**Warning**: these runs were distilled from teachers of different scores ({s['teacher_scores']}): "
                "the rows do not share one teacher.",
                "",
            ]
        for row in s["rows"]:
            std = f"{row['std']:.4f}" if row["std"] is not None else ""
            sizes = row["final_losses"]
            terms = f"{sizes['feature']:.3g} / {sizes['kd']:.3g}" if {"feature", "kd"} <= set(sizes) else ""
            lines.append(
                f"| {row['run']} | {','.join(row['seeds'])} | {row['mean']:.4f} | {std} | {verdict(row, 'vs_kd')} | "
                f"{verdict(row, 'vs_finetune')} | {terms} | {row['wall_time_s']:.0f} |"
            )
        lines += ["", f"Machine: {s['rows'][0]['machine']}.", ""]
    lines += not_run_section(ResultStore(args.results_dir), args.tasks, args.runs, args.seeds)
    lines += ["## Default weights", "", "| loss | feature | weight | source |", "|---|---|---|---|"]
    for name in FEATURE_LOSSES:
        loss = get_match_loss(name, default_feature(name))
        lines.append(f"| {name} | {loss.feature} | {loss.weight:g} | {loss.paper} |")
    return "\n".join(lines) + "\n"


def feature_label(run: str) -> str | None:
    """The plotted name of a feature-loss run (`feature-rkd` -> `rkd`); `None` for the baselines."""
    return run.removeprefix("feature-") if run.startswith("feature-") else None


def difference_plot(summaries: list[dict], path: Path, against: str = "kd", label=feature_label,
                    title: str = "Feature losses on top of KD, 3-layer MiniLM students") -> None:  # fmt: skip
    """A report's comparison as a forest plot: per run that `label(run)` names, its difference from `against` on
    each task, with the interval (in points). Nothing is drawn before a comparison exists."""
    rows = [{"label": label(row["run"]), "series": f"{s['task']} ({s['metric']})",
             **{k: 100 * row[f"vs_{against}"][k] for k in ("difference", "low", "high")}}
            for s in summaries for row in s["rows"] if label(row["run"]) and row.get(f"vs_{against}")]  # fmt: skip
    if rows:
        interval_plot(rows, path, f"difference from {against} (points, 95% paired bootstrap interval)", title)


def plot_against_finetune(summaries: list[dict], report: str, title: str) -> None:
    """Every run's difference from `finetune` as a forest plot next to the report (`<report>.png`)."""
    difference_plot(summaries, Path(report).with_suffix(".png"), "finetune",
                    lambda run: None if run == "finetune" else run, title)  # fmt: skip


def against_finetune_figure(summaries: list[dict], report: str) -> list[str]:
    """The report's lines showing [`plot_against_finetune`]'s figure; none before any run has finished."""
    if not any(s["rows"] for s in summaries):
        return []
    figure = Path(report).with_suffix(".png").name
    caption = "Every run's difference from `finetune` with its interval: filled markers where it excludes 0."
    return [f"![every run against finetune, per task]({figure})", "", caption, ""]


def not_run_section(store: ResultStore, tasks, runs, seeds, applies=lambda task, run: True) -> list[str]:
    """A report's "Not run yet" lines: per task, how many of its runs (those `applies(task, run)` allows) have no
    result file yet, and their seeds; nothing when every run has finished."""
    lines = []
    for name in tasks:
        planned = [(run, seed) for seed in seeds for run in runs if applies(get_task(name), run)]
        missing = [(run, seed) for run, seed in planned if not store.has(name, run, seed)]
        if missing:
            seeds_left = ", ".join(sorted({seed for _, seed in missing}))
            lines.append(f"- {name}: {len(missing)} of {len(planned)} runs (seeds {seeds_left})")
    return ["## Not run yet", "", *lines, ""] if lines else []


def open_results(args) -> ResultStore:
    """A check's result store, `args.results_dir`, with its bootstrap intervals kept next to it."""
    use_interval_file(Path(args.results_dir) / "bootstrap_intervals.json")
    return ResultStore(args.results_dir)


def rebuild_report(args, argv: list[str], summarise, report) -> list[dict]:
    """`summarise(task)` for each of `args.tasks`, `report(summaries, args, argv)` written to `args.report` with the
    summaries next to it; returns the summaries."""
    summaries = [summarise(get_task(t)) for t in args.tasks]
    return save_report(args.report, report(summaries, args, argv), summaries)


def save_report(path: str, text: str, summaries: list[dict]) -> list[dict]:
    """Write a check's markdown report to `path` and its summaries next to it (`.json`); returns the summaries."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    Path(path).with_suffix(".json").write_text(json.dumps(summaries, indent=2) + "\n")
    return summaries


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args, teachers = parse(argv)
    store = open_results(args)
    assert set(FEATURE_LOSSES) <= set(MATCH_LOSSES)

    def write_report():
        summaries = rebuild_report(args, argv, functools.partial(summary, store=store, glue_dir=args.glue_dir), report)
        difference_plot(summaries, Path(args.report).with_suffix(".png"))
        return summaries

    if not args.report_only:
        for task_name in args.tasks:
            task = get_task(task_name)
            if all(store.has(task.name, run, seed) for seed in args.seeds for run in args.runs):
                continue
            if task_name not in teachers:
                teachers[task_name] = check_layer_methods.ensure_teacher(
                    task, args.glue_dir, Path(args.output_dir), TEACHER_SEED, store
                )
            for seed in args.seeds:
                for run in args.runs:
                    start = time.time()
                    train(task, run, seed, args, teachers[task_name], store)
                    if time.time() - start > 1:
                        write_report()
    return write_report()


if __name__ == "__main__":
    main()
