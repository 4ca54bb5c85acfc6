#!/usr/bin/env python
"""Real-data check of DynaBERT: train one elastic model per GLUE task from the fine-tuned packaged MiniLM, evaluate
its (width, depth) grid, and compare two of its sub-networks with same-size models fine-tuned without DynaBERT.

    python scripts/checks/check_dynabert.py --glue_dir ../shared/glue_data --tasks cola rte
    python scripts/checks/check_dynabert.py --glue_dir "" --tasks qnli mnli --max_train_samples 20000   # from the Hub

Per task (teacher from scripts/checks/check_layer_methods.py's folder, trained first if missing):
1. `distill_glue.py --method dynabert --stage both` (importance on the first 2048 training rows, rewiring, the width
   stage, then the width-and-depth stage; DYNABERT_EPOCHS epochs each);
   with --final_epochs, then the authors' optional final fine-tuning of every sub-network on the gold labels;
2. `dynabert_grid.py` on the result: table, heatmap, parameters and latency of every exported sub-network;
3. baselines: the teacher rewired by the same importance, its (0.5, 1.0) and (1.0, 0.5) sub-networks exported and
   fine-tuned on the task without a teacher (the teacher's recipe: its epochs and learning rate).
With `--seeds 42 43 44`, steps 1 and 3 run once per seed (`<output_dir>/<task>/seed<seed>/`, the baselines' rewired
starting points shared) and the table compares the means; the full grid is the first seed's.
Every run is resumable (a finished run is kept). Writes docs/dynabert.md, with each task's grid under docs/dynabert/.
`--report_only` trains nothing: it reports each task at the seeds whose runs have all finished (the report of a
check stopped part-way; the same command without it trains the rest).

`--select_rows N` adds a second verdict with model selection on held-out training rows, a rule fixed before its
numbers were seen: the last N rows of the training split (never trained on by DynaBERT or the baselines, nor by
the teachers of SST-2, which trains on the first 8000, and of QNLI, QQP and MNLI, on the first 20000; the other
teachers saw every training row). Each compared DynaBERT
sub-network picks between its model before and after the final fine-tuning, each baseline among its end-of-epoch
checkpoints (trained with one checkpoint per epoch, `baseline-<setting>-epochs/`, whose last epoch is the plain
baseline; a check from before --select_rows keeps its `baseline-<setting>/` too), by the main metric
on those rows (ties keep the recipe's own model: after the final step, the last epoch); the verdict compares the
picked models' dev scores. Every candidate's held-out and dev scores go into the report's .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

REPO = Path(__file__).resolve().parents[2]
# check_layer_methods sits next to this file, dynabert_grid (a user entry point) in scripts/
sys.path[:0] = [str(REPO / "scripts" / "checks"), str(REPO / "scripts")]

import check_layer_methods  # noqa: E402
import dynabert_grid  # noqa: E402

from bertdistill import DynaBertConfig  # noqa: E402
from bertdistill.compression import compute_importance, export_subnetwork, make_elastic, rewire  # noqa: E402
from bertdistill.glue_run import evaluate_model, tokenize_split  # noqa: E402
from glue_tasks import check_glue_dir, get_task, load_glue_split, paired_bootstrap  # noqa: E402

# Epochs per stage; the baselines train the teacher's epochs (check_layer_methods.TASK_SETTINGS).
DYNABERT_EPOCHS = {"cola": 3, "rte": 3, "mrpc": 3, "sst2": 1, "stsb": 3, "qnli": 1, "qqp": 1, "mnli": 1}
COMPARED = [(0.5, 1.0), (1.0, 0.5)]
BOOTSTRAP_RESAMPLES = 2000  # of the dev rows, for the verdicts' intervals (about 10 s per interval on MRPC)


def export_rewired_teacher(teacher: Path, task, glue_dir: str, samples: int, outputs: dict[tuple, Path]) -> None:
    """The teacher, rewired by importance on the first `samples` training rows, cut to each (width, depth) of
    `outputs` and saved in its folder; folders saved before are kept, and nothing is computed when all exist."""
    missing = {setting: out for setting, out in outputs.items() if not (out / "config.json").is_file()}
    if not missing:
        return
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    rows = load_glue_split(task, "train", glue_dir)
    rows = rows.select(range(min(samples, len(rows))))
    rows = tokenize_split(rows, task, tokenizer, check_layer_methods.TASK_SETTINGS[task.name]["max_seq_length"])
    rows = rows.rename_column("label", "labels")
    loader = DataLoader(rows, batch_size=64, collate_fn=DataCollatorWithPadding(tokenizer))
    rewire(model, compute_importance(model, loader))
    for (width, depth), out in missing.items():
        export_subnetwork(model, width, depth).save_pretrained(out)
        tokenizer.save_pretrained(out)


def grid(model_dir: Path, output_dir: Path, argv: list[str]) -> list[dict]:
    """dynabert_grid.py's rows for `model_dir` (written to `output_dir`), read back from `output_dir/grid.json` when
    that grid was made from the same weights with the same arguments: a rerun of the check (another task, another
    seed) does not evaluate and time again the grids it has."""
    source = {"argv": argv, "weights": check_layer_methods.file_digest(model_dir / "model.safetensors")}
    stamp, made = output_dir / "grid.source.json", output_dir / "grid.json"
    if stamp.is_file() and made.is_file() and json.loads(stamp.read_text()) == source:
        print(f"{output_dir}: grid of {model_dir} kept (same weights, same arguments)", flush=True)
        return json.loads(made.read_text())["rows"]
    rows = dynabert_grid.main(["--model_dir", str(model_dir), "--output_dir", str(output_dir), *argv])
    stamp.write_text(json.dumps(source))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--glue_dir",
        default="../shared/glue_data",
        help='Classic GLUE TSV folder; --glue_dir "" loads nyu-mll/glue from the Hub (where QNLI, QQP, MNLI are).',
    )
    parser.add_argument("--tasks", nargs="+", default=["cola", "rte"], choices=sorted(DYNABERT_EPOCHS))
    parser.add_argument("--teacher_root", default="runs/layer_methods", help="check_layer_methods.py's folder.")
    parser.add_argument("--output_dir", default="runs/dynabert")
    parser.add_argument("--learning_rate", default="5e-5")
    parser.add_argument("--importance_samples", type=int, default=2048)
    parser.add_argument("--seed", default="42", help="The teacher's seed (check_layer_methods.py's teacher).")
    parser.add_argument(
        "--seeds", nargs="+", default=["42"], help="DynaBERT's and the baselines' seeds; the table compares means."
    )
    parser.add_argument("--report", default="docs/dynabert.md")
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="Budget: DynaBERT and the baselines train on the first N training rows.",
    )
    parser.add_argument("--max_eval_samples", type=int, default=None, help="For a quick trial run only.")
    parser.add_argument(
        "--report_only", action="store_true", help="Train nothing; report each task at its finished seeds."
    )
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per stage (default: DYNABERT_EPOCHS).")
    parser.add_argument(
        "--final_epochs", type=int, default=0, help="Epochs of DynaBERT's optional final gold-label fine-tuning."
    )
    parser.add_argument(
        "--select_rows",
        type=int,
        default=0,
        help="Add a verdict with model selection on the last N training rows (see above); needs --final_epochs and "
        "--max_train_samples.",
    )
    args = parser.parse_args(argv)
    if args.select_rows and not (args.final_epochs and args.max_train_samples):
        raise ValueError(
            "--select_rows picks between the models before and after the final fine-tuning on training rows nothing "
            "trained on: give --final_epochs and --max_train_samples too"
        )
    trial = [f"--{k}={getattr(args, k)}" for k in ("max_train_samples", "max_eval_samples") if getattr(args, k)]
    for name in dict.fromkeys(args.tasks):  # Before anything trains: every task's files.
        check_glue_dir(name, args.glue_dir, ("train", get_task(name).eval_splits[0]))

    sections, summary = [], []
    seeds = list(dict.fromkeys(args.seeds))
    for name in dict.fromkeys(args.tasks):
        task = get_task(name)
        settings = check_layer_methods.TASK_SETTINGS[task.name]
        root = Path(args.output_dir) / task.name
        task_seeds = [
            seed for seed in seeds if not args.report_only or finished(root / f"seed{seed}", bool(args.select_rows))
        ]
        if not task_seeds:
            print(f"{task.name}: no seed with every run finished in {root}; not reported", flush=True)
            continue
        teacher = check_layer_methods.ensure_teacher(task, args.glue_dir, Path(args.teacher_root), args.seed)
        root.mkdir(parents=True, exist_ok=True)
        epochs = str(args.epochs or DYNABERT_EPOCHS[task.name])
        teacher_score = json.loads((teacher / "eval_results.json").read_text())[f"eval_{task.main_metric}"]
        # The baselines' starting points depend on the teacher and the importance rows only: one per task.
        initials = {(w, d): root / f"baseline-w{w:g}-d{d:g}-init" for w, d in COMPARED}
        # The same rows as DynaBERT's own importance pass: the first --importance_samples of the rows it trains on.
        samples = min(args.importance_samples, args.max_train_samples or args.importance_samples)
        export_rewired_teacher(teacher, task, args.glue_dir, samples, initials)
        docs = Path(args.report).with_suffix("") / task.name
        scores = {setting: {"dynabert": {}, "baseline": {}, "width_stage": {}, "before_final": {}}
                  for setting in COMPARED}  # fmt: skip
        selections = {setting: {} for setting in COMPARED}
        if args.select_rows:
            splits = selection_splits(task, args, teacher, settings["max_seq_length"])
        for seed in task_seeds:
            seed_root = root / f"seed{seed}"
            common = [*check_layer_methods.common_arguments(task, args.glue_dir, seed), *trial]
            elastic = seed_root / "dynabert"
            if not (elastic / "eval_results.json").is_file():
                seed_root.mkdir(parents=True, exist_ok=True)
                check_layer_methods.run(
                    [sys.executable, "scripts/distill_glue.py", *common, "--method", "dynabert", "--stage", "both",
                     "--teacher_model_name_or_path", str(teacher), "--learning_rate", args.learning_rate,
                     "--num_train_epochs", epochs, "--width_num_train_epochs", epochs,
                     "--importance_samples", str(args.importance_samples), "--output_dir", str(elastic),
                     *(["--final_num_train_epochs", str(args.final_epochs)] if args.final_epochs else [])],
                    seed_root / "dynabert.log",
                )  # fmt: skip
            # The first seed's model gets the full grid (table, heatmap, latency); the others only the compared cells.
            first = seed == task_seeds[0]
            rows = grid(elastic, docs if first else seed_root / "grid", [
                "--task_name", task.name, "--glue_dir", args.glue_dir,
                "--max_seq_length", str(settings["max_seq_length"]),
                *(["--max_eval_samples", str(args.max_eval_samples)] if args.max_eval_samples else []),
                *([] if first else ["--widths", *(str(w) for w, _ in COMPARED),
                                    "--depths", *(str(d) for _, d in COMPARED), "--latency_repeats", "1"]),
            ])  # fmt: skip
            if first:
                parameters = {(r["width_mult"], r["depth_mult"]): r["parameters"] for r in rows}
                grid_text = (docs / "grid.md").read_text().split("\n\n", 2)[-1]
            # Diagnostics, not the verdict: the full-depth cells straight after the width stage (DynaBERT_W), before
            # the width-and-depth stage and the final fine-tuning trained the same weights for the shallow cells; and
            # the compared cells before the final fine-tuning (when there is one).
            diagnostics = [("width_stage", "width", [(w, d) for w, d in COMPARED if d == 1.0])]
            if args.final_epochs:
                diagnostics.append(("before_final", "width_depth", COMPARED))
            for key, stage, cells in diagnostics:
                stage_rows = grid(elastic.with_name(f"{elastic.name}-{stage}"), seed_root / f"grid-{stage}", [
                    "--task_name", task.name, "--glue_dir", args.glue_dir,
                    "--max_seq_length", str(settings["max_seq_length"]), "--widths", *(str(w) for w, _ in cells),
                    "--depths", *(str(d) for _, d in cells), "--latency_repeats", "1",
                    *(["--max_eval_samples", str(args.max_eval_samples)] if args.max_eval_samples else []),
                ])  # fmt: skip
                for row in stage_rows:
                    if (row["width_mult"], row["depth_mult"]) in cells:
                        scores[row["width_mult"], row["depth_mult"]][key][seed] = row[task.main_metric]
            for width, depth in COMPARED:
                label = f"w{width:g}-d{depth:g}"
                tuned = baseline_folder(seed_root, label, bool(args.select_rows))
                epochs_dir = seed_root / f"baseline-{label}-epochs"
                # The same fine-tuning either way; the run kept for selection saves a checkpoint per epoch.
                per_epoch = ["--save_strategy", "epoch", "--save_total_limit", str(settings["epochs"])]
                for folder, extra in ([(epochs_dir, per_epoch)] if args.select_rows else []) + [(tuned, [])]:
                    if not (folder / "eval_results.json").is_file():
                        check_layer_methods.run(
                            [sys.executable, "scripts/distill_glue.py", *common, "--method", "finetune",
                             "--teacher_model_name_or_path", str(teacher), "--student_model_name_or_path",
                             str(initials[width, depth]), "--learning_rate", "5e-5", "--output_dir", str(folder),
                             *extra],
                            seed_root / f"{folder.name}.log",
                        )  # fmt: skip
                cell = next(r for r in rows if (r["width_mult"], r["depth_mult"]) == (width, depth))
                scores[width, depth]["dynabert"][seed] = cell[task.main_metric]
                scores[width, depth]["baseline"][seed] = json.loads((tuned / "eval_results.json").read_text())[
                    f"eval_{task.main_metric}"
                ]
                if args.select_rows:
                    # The recipe's own model first: it is kept on a tie.
                    dynabert_candidates = {"after final": (elastic, (width, depth)),
                                           "before final": (elastic.with_name(f"{elastic.name}-width_depth"),
                                                            (width, depth))}  # fmt: skip
                    baseline_candidates = {
                        f"epoch {epoch:g}": (checkpoint, None)
                        for epoch, checkpoint in reversed(epoch_checkpoints(epochs_dir))
                    }
                    selections[width, depth][seed] = {
                        who: pick(candidates, task, splits, seed_root / "selection.json")
                        for who, candidates in (("dynabert", dynabert_candidates),
                                                ("baseline", baseline_candidates))
                    }  # fmt: skip
        for (width, depth), by_run in scores.items():
            means = {run: statistics.fmean(by_seed.values()) if by_seed else None for run, by_seed in by_run.items()}
            summary.append({
                "task": task.name, "width_mult": width, "depth_mult": depth, "metric": task.main_metric,
                "dynabert": means["dynabert"], "baseline": means["baseline"], "teacher": teacher_score,
                "seeds": task_seeds, "dynabert_by_seed": by_run["dynabert"], "baseline_by_seed": by_run["baseline"],
                "width_stage": means["width_stage"], "width_stage_by_seed": by_run["width_stage"],
                "before_final": means["before_final"], "before_final_by_seed": by_run["before_final"],
                "parameters": parameters[width, depth], "beats_baseline": means["dynabert"] > means["baseline"],
            })  # fmt: skip
            if selections[width, depth]:
                picked = {who: {seed: s[who]["picked"] for seed, s in selections[width, depth].items()}
                          for who in ("dynabert", "baseline")}  # fmt: skip
                means = {who: statistics.fmean(p[seed]["dev"] for seed in p) for who, p in picked.items()}
                summary[-1]["selection"] = {
                    "rows": args.select_rows, "dynabert": means["dynabert"], "baseline": means["baseline"],
                    "beats_baseline": means["dynabert"] > means["baseline"], "picked": picked,
                    "candidates": {seed: {who: s[who]["scores"] for who in s}
                                   for seed, s in selections[width, depth].items()},
                }  # fmt: skip
                # How far each verdict's gap is outside the noise of a dev set this size: a paired bootstrap over
                # the dev rows (every seed scored on the same resampled rows), for the recipe's own models (each
                # side's first candidate) and for the picked ones.
                chosen = selections[width, depth].values()
                for verdict, choose in (
                    (summary[-1], lambda side: next(iter(side["scores"]))),
                    (summary[-1]["selection"], lambda side: side["picked"]["candidate"]),
                ):
                    verdict["interval"] = paired_bootstrap(task, *(
                        [s[who]["dev_predictions"][choose(s[who])] for s in chosen] for who in ("dynabert", "baseline")
                    ), splits[1]["label"], n_resamples=BOOTSTRAP_RESAMPLES)  # fmt: skip
        sections.append(
            f"## {task.name}\n\nTeacher (full MiniLM, fine-tuned): {task.main_metric} {teacher_score:.4f}. DynaBERT: "
            f"{epochs} epoch(s) per stage{f' + {args.final_epochs} final' if args.final_epochs else ''}, seed "
            f"{task_seeds[0]}. ![grid]({docs.parent.name}/{task.name}/grid.png)\n\n" + grid_text
        )
        # Written after every task, so that an interrupted check keeps the report of the tasks it finished.
        print(write_report(args, trial, sections, summary))


def baseline_folder(seed_root: Path, label: str, select: bool) -> Path:
    """A compared setting's baseline: `baseline-<label>/`, or with `select` the run with one checkpoint per epoch,
    `baseline-<label>-epochs/`, whose last epoch is the same model (same steps, seed and data), so that one training
    serves both, unless the plain folder exists already (checks run before --select_rows existed)."""
    plain = seed_root / f"baseline-{label}"
    return seed_root / f"baseline-{label}-epochs" if select and not (plain / "eval_results.json").is_file() else plain


def finished(seed_root: Path, select: bool = False) -> bool:
    """Whether a seed's elastic model and both baselines (with `select`, the baselines with one checkpoint per
    epoch) have finished (their dev results are written last)."""
    labels = [f"w{w:g}-d{d:g}" for w, d in COMPARED]
    folders = [seed_root / "dynabert", *(baseline_folder(seed_root, label, select) for label in labels)]
    folders += [seed_root / f"baseline-{label}-epochs" for label in labels] if select else []
    return all((folder / "eval_results.json").is_file() for folder in folders)


def selection_splits(task, args, teacher: Path, max_seq_length: int):
    """The held-out rows (the last --select_rows of the training split) and the dev split, tokenized by the teacher's
    tokenizer (every candidate shares its vocabulary), and that tokenizer. Raises when the held-out rows would overlap
    the rows trained on."""
    train = load_glue_split(task, "train", args.glue_dir)
    if len(train) - args.select_rows < args.max_train_samples:
        raise ValueError(
            f"{task.name} has {len(train)} training rows: the last --select_rows {args.select_rows} would overlap "
            f"the first --max_train_samples {args.max_train_samples} trained on; lower one of them"
        )
    dev = load_glue_split(task, task.eval_splits[0], args.glue_dir)
    if args.max_eval_samples:
        dev = dev.select(range(min(args.max_eval_samples, len(dev))))
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    held_out = train.select(range(len(train) - args.select_rows, len(train)))
    return *(tokenize_split(rows, task, tokenizer, max_seq_length) for rows in (held_out, dev)), tokenizer


def epoch_checkpoints(folder: Path) -> list[tuple[float, Path]]:
    """`(epoch, checkpoint folder)` of a run saved once per epoch, in training order."""
    found = []
    for checkpoint in folder.glob("checkpoint-*"):
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        found.append((state["epoch"], checkpoint))
    if not found:
        raise FileNotFoundError(f"no checkpoint-* in {folder}: was it trained with --save_strategy epoch?")
    return sorted(found)


def pick(candidates: dict[str, tuple[Path, tuple | None]], task, splits: tuple, cache: Path) -> dict:
    """Score every candidate (`name: (folder, (width, depth) of an elastic model, or None for a plain one)`) on the
    held-out rows and on dev (`splits`: `selection_splits`'s), and pick by the held-out score; the first candidate
    wins ties. Returns the scores, the pick and every candidate's dev predictions, cached in `cache` under the
    folder, setting and row counts, with the weights' digest (changed weights are scored again)."""
    held_out, dev, tokenizer = splits
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    scores, predictions = {}, {}
    for name, (folder, setting) in candidates.items():
        key = f"{folder}|{setting}|{len(held_out)}|{len(dev)}"
        digest = check_layer_methods.file_digest(folder / "model.safetensors")
        if known.get(key, {}).get("weights") != digest or "dev_predictions" not in known[key]:
            model = AutoModelForSequenceClassification.from_pretrained(folder)
            if setting is not None:
                model = export_subnetwork(make_elastic(model), *setting)
            metric = f"eval_{task.main_metric}"
            dev_metrics, dev_predictions = evaluate_model(model, dev, tokenizer, task, return_predictions=True)
            known[key] = {"weights": digest, "held_out": evaluate_model(model, held_out, tokenizer, task)[metric],
                          "dev": dev_metrics[metric], "dev_predictions": dev_predictions}  # fmt: skip
            cache.write_text(json.dumps(known))
        scores[name] = {"held_out": known[key]["held_out"], "dev": known[key]["dev"]}
        predictions[name] = known[key]["dev_predictions"]
    best = max(scores, key=lambda name: scores[name]["held_out"])  # max keeps the first of equal scores
    return {"scores": scores, "picked": {"candidate": best, **scores[best]}, "dev_predictions": predictions}


def write_report(args, trial: list[str], sections: list[str], summary: list[dict]) -> str:
    """Write --report (markdown) and its .json from the tasks finished so far; returns the summary table."""
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = ["| task | width | depth | params (M) | metric | seeds | DynaBERT sub-network | fine-tuned same size | "
             "teacher | beats baseline | difference (95% CI) | after the width stage only | before the final "
             "fine-tuning |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(row, key):
        """The mean over the seeds, then with several seeds every seed's score in the order of the seeds column."""
        if row.get(key) is None:
            return "n/a"
        by_seed = row[f"{key}_by_seed"].values()
        return f"{row[key]:.4f}" + (f" ({', '.join(f'{v:.4f}' for v in by_seed)})" if len(by_seed) > 1 else "")

    def interval(verdict):
        """DynaBERT minus the baseline, with its paired-bootstrap interval over the dev rows (n/a without one)."""
        if "interval" not in verdict:
            return "n/a"
        return "{difference:+.4f} [{low:+.4f}, {high:+.4f}]".format(**verdict["interval"])

    for row in summary:
        verdict = "yes" if row["beats_baseline"] else "**no**"
        lines.append(f"| {row['task']} | {row['width_mult']:g} | {row['depth_mult']:g} | "
                     f"{row['parameters'] / 1e6:.1f} | {row['metric']} | {', '.join(row['seeds'])} | "
                     f"{cell(row, 'dynabert')} | {cell(row, 'baseline')} | {row['teacher']:.4f} | {verdict} | "
                     f"{interval(row)} | "
                     f"{cell(row, 'width_stage')} | {cell(row, 'before_final')} |")  # fmt: skip
    selected = [row for row in summary if "selection" in row]
    if selected:
        lines += ["", f"With model selection on the last {args.select_rows} training rows (never trained on by "
                  "DynaBERT or the baselines, but by the teacher they start from, except SST-2's; the rule is in "
                  "the script's docstring): each seed's pick, its dev score, and the verdict on the means.", "",
                  "| task | width | depth | seeds | DynaBERT picks | DynaBERT dev | same-size picks | same-size dev | "
                  "beats baseline | difference (95% CI) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in selected:
            choice = row["selection"]

            def picks(who, choice=choice):
                by_seed = choice["picked"][who]
                dev = ", ".join(f"{p['dev']:.4f}" for p in by_seed.values())
                return (", ".join(p["candidate"] for p in by_seed.values()),
                        f"{choice[who]:.4f}" + (f" ({dev})" if len(by_seed) > 1 else ""))  # fmt: skip

            verdict = "yes" if choice["beats_baseline"] else "**no**"
            lines.append(f"| {row['task']} | {row['width_mult']:g} | {row['depth_mult']:g} | "
                         f"{', '.join(row['seeds'])} | {' | '.join(picks('dynabert'))} | "
                         f"{' | '.join(picks('baseline'))} | {verdict} | {interval(choice)} |")  # fmt: skip
    wanted = list(dict.fromkeys(args.seeds))
    partial = list({r["task"]: ", ".join(r["seeds"]) for r in summary if r["seeds"] != wanted}.items())
    report = Path(args.report)
    report.with_suffix(".json").write_text(json.dumps({"machine": machine, "args": vars(args), "rows": summary},
                                                      indent=2))  # fmt: skip
    report.write_text(
        "# DynaBERT: the grid, and sub-networks vs same-size models without DynaBERT\n\n"
        f"Command: `python scripts/checks/check_dynabert.py --glue_dir {shlex.quote(args.glue_dir)} "
        f"--tasks {' '.join(args.tasks)}"
        f"{''.join(' ' + flag.replace('=', ' ') for flag in trial)} --output_dir {args.output_dir} "
        f"--report {args.report}{f' --epochs {args.epochs}' if args.epochs else ''}"
        f"{f' --final_epochs {args.final_epochs}' if args.final_epochs else ''} --seeds {' '.join(args.seeds)}"
        f"{f' --select_rows {args.select_rows}' if args.select_rows else ''}`\n\n"
        f"Machine: {machine}. Teacher: the packaged MiniLM-L6 (6 x 384, 12 heads) fine-tuned per task "
        "(scripts/checks/check_layer_methods.py). DynaBERT: learning rate "
        f"{args.learning_rate}, batch 32, importance on the first {args.importance_samples} training rows (at most "
        "the rows it trains on)"
        + (
            f", then {args.final_epochs} epochs of final fine-tuning of every sub-network on the gold labels (the "
            "authors' optional last step)"
            if args.final_epochs
            else ""
        )
        + ". "
        + losses_text()
        + " Baselines: the teacher rewired by importance on the same rows, "
        "cut to the same (width, depth) and fine-tuned with "
        f"the teacher's recipe ({baseline_epochs(args.tasks)}, learning rate 5e-5), no teacher"
        + (f"; both on the first {args.max_train_samples} training rows" if args.max_train_samples else "")
        + ". Dev-set scores; with several seeds, DynaBERT and the baselines are compared on their means (each "
        "seed's score in brackets), and the grid below is the first seed's. The difference column (with "
        "--select_rows) is DynaBERT's score minus the baseline's with a 95% paired percentile bootstrap interval over "
        f"the dev rows ({BOOTSTRAP_RESAMPLES} resamples, every seed scored on the same resampled rows): it measures "
        "the noise of a dev set this size, not that of the seeds; an interval containing 0 means the dev set cannot "
        "tell the two apart. The last two columns are diagnostics "
        "outside the verdict: the same width of the width stage's model (DynaBERT_W), before the width-and-depth "
        "stage and the final fine-tuning went on training its weights for the shallow sub-networks too; and the "
        "same sub-network before the final fine-tuning (n/a without one)."
        + "".join(
            f" Reported before every run had finished: {task} at seed(s) {seeds} only (the command above trains "
            "the rest)."
            for task, seeds in partial
        )
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + "\n\n".join(sections)
    )
    return "\n".join(lines)


def baseline_epochs(tasks: list[str]) -> str:
    """The baselines' epochs (their teachers' recipe) for the report: `3 epochs`, or per task when they differ."""
    epochs = {name: check_layer_methods.TASK_SETTINGS[name]["epochs"] for name in dict.fromkeys(tasks)}
    if len(set(epochs.values())) == 1:
        n = next(iter(epochs.values()))
        return f"{n} epoch{'s' if n != 1 else ''}"
    return "epochs: " + ", ".join(f"{name} {n}" for name, n in epochs.items())


def losses_text() -> str:
    """DynaBERT's losses as the library's defaults (which this check uses) set them."""
    defaults = {f.name: f.default for f in dataclasses.fields(DynaBertConfig)}
    teacher = (
        "the width stage's model at each sub-network's width and full depth"
        if defaults["width_matched_teacher"]
        else "the width stage's full model"
    )
    width_hidden = defaults["width_alpha_hidden"]
    width_hidden = defaults["alpha_hidden"] if width_hidden is None else width_hidden
    return (
        f"Losses: width stage {defaults['alpha_kd']:g} x soft cross-entropy on the logits + {width_hidden:g} x "
        f"hidden-state MSE against the fine-tuned teacher; width-and-depth stage {defaults['alpha_kd']:g} x soft "
        f"cross-entropy + {defaults['alpha_hidden']:g} x hidden-state MSE against {teacher}."
    )


if __name__ == "__main__":
    main()
