#!/usr/bin/env python
"""Sweep the early-exit threshold of a multi-exit (BYOT) checkpoint on a GLUE dev split: metric, mean layers used and
batch-1 CPU latency at every threshold, next to every exit as a fixed-depth network.

    python scripts/early_exit.py --model_name_or_path runs/byot-sst2 --task_name sst2 --glue_dir ../shared/glue_data \\
        --policy entropy --thresholds 0,0.05,0.1,0.2,0.3,0.5,1 --output_dir runs/byot-sst2/early_exit

Writes `early_exit.md` (the table, the command, the machine), `early_exit.json` (the rows) and `early_exit.png` (the
metric against layers used and against latency) into --output_dir. `--save_setting <threshold>` also writes that
policy and threshold into the checkpoint's config.json, so that loading it exits early from then on. Latency is the
mean over the first --latency_rows dev rows, one at a time, every setting in turn on each row.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertdistill.early_exit import (
    EXIT_POLICIES,
    MultiExitBertForSequenceClassification,
    check_exit_policy,
    early_exit_sweep,
)
from bertdistill.glue_run import check_model_path, run_script, tokenize_split
from bertdistill.plots import early_exit_plot
from glue_tasks import get_task, load_glue_split


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_name_or_path", required=True, help="A multi-exit checkpoint (distill_glue --method byot)."
    )
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--glue_dir", default=None, help="GLUE TSV folder (default: the Hub).")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--policy", default="entropy", choices=[p for p in EXIT_POLICIES if p != "none"])
    parser.add_argument("--thresholds", default="0,0.05,0.1,0.2,0.3,0.5,0.7,1",
                        help="Comma-separated thresholds (patience: agreeing exits, integers >= 1).")  # fmt: skip
    parser.add_argument("--latency_rows", type=int, default=100)
    parser.add_argument("--latency_repeats", type=int, default=1)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--save_setting", type=float, default=None, help="Write this threshold into the checkpoint.")
    args = parser.parse_args(argv)
    try:
        args.threshold_values = [float(t) for t in args.thresholds.split(",") if t.strip()]
    except ValueError as error:
        raise ValueError(f"--thresholds takes comma-separated numbers, got {args.thresholds!r}") from error
    if not args.threshold_values:
        raise ValueError("--thresholds is empty")
    return args


def markdown(rows: list[dict], task, argv: list[str], model) -> str:
    lines = [
        f"# Early exit on {task.name.upper()} dev",
        "",
        "```",
        "python scripts/early_exit.py " + " ".join(argv),
        "```",
        "",
        f"Model: {model.config.num_hidden_layers} layers x {model.config.hidden_size}, exits after layers "
        f"{model.config.exit_layers}. Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}. Latency: batch 1, mean per example, every setting in turn on each row.",
        "",
        f"| setting | {task.main_metric} | mean layers | latency b1 (ms) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['score']:.4f} | {row['mean_layers']:.2f} | {row['latency_b1_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    task = get_task(args.task_name)
    check_model_path(args.model_name_or_path, "--model_name_or_path")
    model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path)
    if not isinstance(model, MultiExitBertForSequenceClassification):
        raise ValueError(
            f"{args.model_name_or_path} is a {type(model).__name__}, not a multi-exit BERT: train one with "
            "scripts/distill_glue.py --method byot"
        )
    if model.config.num_labels != task.num_labels and not task.is_regression:
        raise ValueError(
            f"{args.model_name_or_path} predicts {model.config.num_labels} labels but {task.name} has "
            f"{task.num_labels}"
        )
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    dev = tokenize_split(
        load_glue_split(task, task.eval_splits[0], args.glue_dir), task, tokenizer, args.max_seq_length
    )
    rows = early_exit_sweep(model, dev, tokenizer, task, args.policy, args.threshold_values, args.latency_rows,
                            args.latency_repeats)  # fmt: skip
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "early_exit.md").write_text(markdown(rows, task, argv, model))
    (out / "early_exit.json").write_text(json.dumps(rows, indent=2) + "\n")
    early_exit_plot(
        rows, out / "early_exit.png", f"{task.main_metric} (x 100)", f"{task.name.upper()} dev: early exit"
    )
    if args.save_setting is not None:
        if not Path(args.model_name_or_path).is_dir():
            raise ValueError("--save_setting writes into a local checkpoint folder; download the model first")
        updates = {"exit_policy": args.policy, "exit_threshold": args.save_setting}
        if args.policy == "patience":
            if args.save_setting != int(args.save_setting):
                raise ValueError(f"--save_setting for patience is a whole number of exits, got {args.save_setting}")
            updates = {"exit_policy": "patience", "exit_patience": int(args.save_setting)}
        check_exit_policy(
            args.policy, updates.get("exit_threshold", model.config.exit_threshold),
            updates.get("exit_patience", model.config.exit_patience),
        )  # fmt: skip
        model.config.update(updates)
        model.config.save_pretrained(args.model_name_or_path)
    return rows


if __name__ == "__main__":
    run_script(main)
