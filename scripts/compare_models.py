#!/usr/bin/env python
"""Teacher vs student(s): GLUE dev metrics, parameters, size on disk and CPU latency, side by side.

    python scripts/compare_models.py --task_name sst2 --glue_dir ../shared/glue_data runs/teacher runs/student

Metrics come from each folder's eval_results.json (written by finetune_teacher.py / distill_glue.py). Latency is the
median forward time on real dev sentences at batch 1 and batch 32, models interleaved in one run; a speedup is over
the first model, the median over the repeats of its time divided by the model's time in the same repeat. Every model
reads the sentences through the tokenizer saved in its folder (the first model's where a folder has none), so models
of different vocabularies (an MPNet teacher, a MiniLM one) compare on the same text. Prints a
markdown table and writes it, with the raw numbers, next to --output_json.

With --int8, every model also gets a row for its INT8 dynamically quantized copy (linear layers, CPU): its metrics
from a full pass over the dev set, next to the float32 model's metrics from the same pass (`int8_delta`: the change
of the main metric, in points), its serialized size, and its latency in the same interleaved run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertdistill.benchmark import count_parameters, measure_side_by_side, size_on_disk
from bertdistill.compression import quantize_dynamic_int8, serialized_size
from bertdistill.glue_run import evaluate_model, tokenize_split
from glue_tasks import get_task, load_glue_split

INT8_SUFFIX = " (int8)"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


def _read_metrics(folder: str) -> dict[str, float]:
    results_file = Path(folder) / "eval_results.json"
    return json.loads(results_file.read_text()) if results_file.is_file() else {}


def own_tokenizers(folders: list[str]) -> dict:
    """Per folder, the tokenizer saved in it, else the first folder's (which must have one)."""
    first = AutoTokenizer.from_pretrained(folders[0])
    tokenizers = {}
    for folder in folders:
        saved = any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)
        tokenizers[folder] = AutoTokenizer.from_pretrained(folder) if saved and folder != folders[0] else first
    return tokenizers


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="Checkpoint folders; the first is the reference (the teacher).")
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--glue_dir", default=None, help="Classic GLUE folder (default: $GLUE_DIR, else the Hub).")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output_json", default=None, help="Also write the rows to this JSON file.")
    parser.add_argument("--int8", action="store_true", help="Add each model's INT8 dynamically quantized copy.")
    args = parser.parse_args(argv)

    task = get_task(args.task_name)
    for folder in args.models:
        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json)")
    models = {folder: AutoModelForSequenceClassification.from_pretrained(folder) for folder in args.models}
    tokenizers = own_tokenizers(args.models)
    for folder, model in models.items():
        if len(tokenizers[folder]) > model.config.vocab_size:
            raise ValueError(
                f"{folder} has no tokenizer of its own and the first model's ({len(tokenizers[folder])} tokens) "
                f"does not fit its {model.config.vocab_size}-word vocabulary: save its tokenizer in the folder"
            )
    full_dev = load_glue_split(task, task.eval_splits[0], args.glue_dir)
    dev = full_dev.select(range(32))
    texts = [dev[col] for col in task.text_columns]
    measured = {}  # metrics computed here (float32 and INT8 alike), for --int8
    if args.int8:
        for folder in args.models:
            models[folder + INT8_SUFFIX] = quantize_dynamic_int8(models[folder])
        tokenized = {}
        for name, model in models.items():
            tokenizer = tokenizers[name.removesuffix(INT8_SUFFIX)]
            if id(tokenizer) not in tokenized:
                tokenized[id(tokenizer)] = tokenize_split(full_dev, task, tokenizer, args.max_seq_length)
            metrics = evaluate_model(model, tokenized[id(tokenizer)], tokenizer, task, use_cpu=True)
            measured[name] = {m: metrics[f"eval_{m}"] for m in task.metrics}

    def batch(name, n):
        return tokenizers[name.removesuffix(INT8_SUFFIX)](
            *(list(column[:n]) for column in texts),
            truncation=True,
            max_length=args.max_seq_length,
            padding=True,
            return_tensors="pt",
        )

    reference = args.models[0]
    runs = {}
    for n in (1, 32):
        feeds = {name: batch(name, n) for name in models}
        runs[n] = measure_side_by_side(models, inputs_by_model=feeds, repeats=args.repeats)
    reference_score = _read_metrics(reference).get(f"eval_{task.main_metric}")
    rows = []
    for folder, model in models.items():
        source = folder.removesuffix(INT8_SUFFIX)
        quantized = source != folder
        metrics = {f"eval_{k}": v for k, v in measured[folder].items()} if quantized else _read_metrics(folder)
        score = metrics.get(f"eval_{task.main_metric}")
        delta = None
        if quantized:
            delta = 100 * (measured[folder][task.main_metric] - measured[source][task.main_metric])
        rows.append(
            {
                "model": folder,
                "layers": model.config.num_hidden_layers,
                "hidden": model.config.hidden_size,
                "parameters": count_parameters(models[source]),
                "size_mb": (serialized_size(model) if quantized else size_on_disk(folder)) / 2**20,
                **{m: metrics.get(f"eval_{m}") for m in task.metrics},
                "int8_delta": delta,
                "measured_fp32": measured.get(source) if quantized else None,
                # Share of the reference's main metric that this model keeps.
                "retention": score / reference_score if score is not None and reference_score else None,
                **{f"latency_b{n}_ms": run.median(folder) * 1e3 for n, run in runs.items()},
                **{f"speedup_b{n}": run.speedup(folder, over=reference) for n, run in runs.items()},
            }
        )

    metric_cols = list(task.metrics)
    header = [
        "model",
        "layers",
        "hidden",
        "params (M)",
        "size (MB)",
        *metric_cols,
        "retention",
        *(["int8 Δ (points)"] if args.int8 else []),
        "b1 ms",
        "b32 ms",
        "speedup b1",
        "speedup b32",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["model"],
            row["layers"],
            row["hidden"],
            f"{row['parameters'] / 1e6:.1f}",
            f"{row['size_mb']:.1f}",
            *(f"{row[m]:.4f}" if row[m] is not None else "n/a" for m in metric_cols),
            f"{row['retention']:.1%}" if row["retention"] is not None else "n/a",
            *([f"{row['int8_delta']:+.2f}" if row["int8_delta"] is not None else ""] if args.int8 else []),
            f"{row['latency_b1_ms']:.1f}",
            f"{row['latency_b32_ms']:.1f}",
            f"{row['speedup_b1']:.2f}x",
            f"{row['speedup_b32']:.2f}x",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    print(
        f"\nGLUE {task.name} dev; CPU latency on {machine}, median of {args.repeats} interleaved runs, "
        "speedups paired within each run\n"
    )
    print("\n".join(lines))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
