#!/usr/bin/env python
"""Every (width, depth) sub-network of a DynaBERT model on a GLUE dev set: metric, parameters, size and CPU latency,
as a table and a heatmap; pick the best setting under a parameter or latency budget and export it.

    python scripts/dynabert_grid.py --model_dir runs/dynabert-cola --task_name cola --glue_dir ../shared/glue_data
    python scripts/dynabert_grid.py ... --max_parameters 12e6 --export_dir runs/cola-12M
    python scripts/dynabert_grid.py ... --width_mult 0.5 --depth_mult 1.0 --export_dir runs/cola-w0.5

Each setting is exported as a physically smaller checkpoint (`bertdistill.elastic.export_subnetwork`) and that is
what gets evaluated and timed: the numbers are those of the model a user would deploy. Latency: median forward time
on dev sentences at batch 1 (3 x --latency_repeats) and batch 32, all settings interleaved in one run. Writes
grid.json, grid.md and grid.png into --output_dir (default: <model_dir>/grid).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertdistill.benchmark import count_parameters, measure_side_by_side, size_on_disk
from bertdistill.compression import (
    DEFAULT_DEPTHS,
    DEFAULT_WIDTHS,
    choose_setting,
    export_subnetwork,
    make_elastic,
)
from bertdistill.glue_run import check_model_path, evaluate_model, tokenize_split
from bertdistill.plots import grid_heatmap
from glue_tasks import get_task, load_glue_split


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="A DynaBERT-trained checkpoint (distill_glue.py output).")
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--glue_dir", default=None, help="Classic GLUE folder (default: $GLUE_DIR, else the Hub).")
    parser.add_argument("--widths", type=float, nargs="+", default=list(DEFAULT_WIDTHS))
    parser.add_argument("--depths", type=float, nargs="+", default=list(DEFAULT_DEPTHS))
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--latency_repeats", type=int, default=10)
    parser.add_argument("--output_dir", default=None, help="Default: <model_dir>/grid.")
    parser.add_argument("--max_parameters", type=float, default=None, help="Budget: pick the best setting within.")
    parser.add_argument("--max_latency_ms", type=float, default=None, help="Budget on batch-1 CPU latency.")
    parser.add_argument("--width_mult", type=float, default=None, help="Export this setting (with --depth_mult).")
    parser.add_argument("--depth_mult", type=float, default=None)
    parser.add_argument("--export_dir", default=None, help="Save the chosen sub-network here.")
    args = parser.parse_args(argv)

    check_model_path(args.model_dir, "--model_dir")
    if (args.width_mult is None) != (args.depth_mult is None):
        raise ValueError("Give --width_mult and --depth_mult together")
    budget = args.max_parameters is not None or args.max_latency_ms is not None
    if budget and args.width_mult is not None:
        raise ValueError("Give a budget (--max_parameters/--max_latency_ms) or a setting (--width_mult), not both")
    if args.export_dir and not budget and args.width_mult is None:
        raise ValueError("--export_dir needs a budget or a setting to export")
    task = get_task(args.task_name)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if not getattr(model.config, "dynabert_rewired", False):
        print("warning: this model was not rewired by DynaBERT; narrow settings keep the first heads and neurons")
    make_elastic(model)
    raw = load_glue_split(task, task.eval_splits[0], args.glue_dir)
    if args.max_eval_samples is not None:
        raw = raw.select(range(min(args.max_eval_samples, len(raw))))
    dev = tokenize_split(raw, task, tokenizer, args.max_seq_length)

    settings = [(w, d) for d in sorted(args.depths) for w in sorted(args.widths)]
    if args.width_mult is not None and (args.width_mult, args.depth_mult) not in settings:
        settings.append((args.width_mult, args.depth_mult))
    output_dir = Path(args.output_dir or Path(args.model_dir) / "grid")
    output_dir.mkdir(parents=True, exist_ok=True)
    exported, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for width, depth in settings:
            name = f"w{width:g}-d{depth:g}"
            sub = export_subnetwork(model, width, depth)
            sub.save_pretrained(Path(tmp) / name)
            metrics = evaluate_model(sub, dev, tokenizer, task, args.per_device_eval_batch_size)
            exported[name] = sub
            rows.append({
                "width_mult": width, "depth_mult": depth, "layers": sub.config.num_hidden_layers,
                "heads": sub.config.num_attention_heads, "intermediate_size": sub.config.intermediate_size,
                "parameters": count_parameters(sub),
                "size_mb": size_on_disk(Path(tmp) / name) / 2**20,
                **{m: metrics[f"eval_{m}"] for m in task.metrics},
            })  # fmt: skip
            print(f"{name}: {task.main_metric} {rows[-1][task.main_metric]:.4f}", flush=True)
    texts = [raw[column][:32] for column in task.text_columns]

    def batch(n):
        return tokenizer(*(list(t[:n]) for t in texts), truncation=True, max_length=args.max_seq_length,
                         padding=True, return_tensors="pt")  # fmt: skip

    # Batch 1 is quick and noisier: three times the repeats.
    runs = {n: measure_side_by_side(exported, batch(n), repeats=args.latency_repeats * (3 if n == 1 else 1))
            for n in (1, 32)}  # fmt: skip
    full = "w1-d1"
    for row, name in zip(rows, exported):
        for n, run in runs.items():
            row[f"latency_b{n}_ms"] = run.median(name) * 1e3
            if full in exported:
                row[f"speedup_b{n}"] = run.speedup(name, over=full)

    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    metric = task.main_metric
    header = "| width | depth | layers x heads, FFN | params (M) | size (MB) | " + " | ".join(task.metrics)
    header += " | b1 ms | b32 ms | speedup b32 |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        lines.append(
            f"| {row['width_mult']:g} | {row['depth_mult']:g} | {row['layers']} x {row['heads']}, "
            f"{row['intermediate_size']} | {row['parameters'] / 1e6:.1f} | {row['size_mb']:.1f} | "
            + " | ".join(f"{row[m]:.4f}" for m in task.metrics)
            + f" | {row['latency_b1_ms']:.1f} | {row['latency_b32_ms']:.1f} | {row.get('speedup_b32', 0):.2f}x |"
        )
    table = "\n".join(lines)
    print(f"\nGLUE {task.name} dev ({len(dev)} rows), {args.model_dir}; CPU latency on {machine}\n\n{table}")
    (output_dir / "grid.json").write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=2))
    (output_dir / "grid.md").write_text(
        f"# DynaBERT grid: {task.name}\n\nModel: `{args.model_dir}`. GLUE {task.name} dev, {len(dev)} rows. "
        f"Latency: median of {args.latency_repeats} interleaved forwards on {machine}.\n\n{table}\n"
    )
    grid_heatmap(rows, metric, output_dir / "grid.png", title=f"DynaBERT on {task.name}: dev {metric}")
    print(f"wrote {output_dir}/grid.json, grid.md, grid.png")

    if budget or args.width_mult is not None:
        if budget:
            chosen = choose_setting(rows, metric, args.max_parameters and int(args.max_parameters),
                                    args.max_latency_ms)  # fmt: skip
        else:
            chosen = next(r for r in rows if (r["width_mult"], r["depth_mult"]) == (args.width_mult, args.depth_mult))
        print(f"chosen: width {chosen['width_mult']:g}, depth {chosen['depth_mult']:g}: {metric} "
              f"{chosen[metric]:.4f}, {chosen['parameters'] / 1e6:.1f}M parameters, "
              f"{chosen['latency_b1_ms']:.1f} ms at batch 1")  # fmt: skip
        if args.export_dir:
            sub = export_subnetwork(model, chosen["width_mult"], chosen["depth_mult"])
            sub.save_pretrained(args.export_dir)
            tokenizer.save_pretrained(args.export_dir)
            print(f"exported to {args.export_dir}")
    return rows


if __name__ == "__main__":
    main()
