#!/usr/bin/env python
"""ONNX Runtime INT8 variants of one float student side by side: dev metric, bytes and latency of each against the
float32 PyTorch model and its float ONNX export, all timed in one interleaved run (as `scripts/compress.py` reports).

    python scripts/checks/compare_int8.py --task_name mrpc --glue_dir ../shared/glue_data \\
        --teacher runs/compress/teachers/mrpc --model runs/compression/mrpc/2-vocab \\
        --output_dir runs/int8/mrpc --report docs/int8/mrpc.md

Variants: `dynamic` (INT8 weights of every quantizable operator, the embedding lookups included, activations
quantized per batch on the fly; the pipeline's default), `dynamic-per-channel` (one weight scale per output
channel), `dynamic-per-channel-fused` (the same after ONNX Runtime's BERT graph optimizer fused attention, layer
norms and GELU), `dynamic-matmul` (the matrix products only: the embedding tables stay float32), `static-per-channel`
(activation ranges fixed by MinMax calibration on `--calibration_rows` training rows, QDQ format, MatMul and Gather:
`quantize_onnx`'s static default), `static-every-op` (static on every operator ONNX Runtime can quantize, the
attention-mask addition and softmax included: shows why that is not the default). Each variant's folder is reused
when it exists, so an interrupted run goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

# op_types: None = quantize_onnx's default for the mode, "every" = every operator ONNX Runtime can quantize.
VARIANTS = {
    "dynamic": {"mode": "dynamic", "per_channel": False, "op_types": None},
    "dynamic-per-channel": {"mode": "dynamic", "per_channel": True, "op_types": None},
    "dynamic-per-channel-fused": {"mode": "dynamic", "per_channel": True, "op_types": None, "optimize": True},
    "dynamic-matmul": {"mode": "dynamic", "per_channel": False, "op_types": ["MatMul"]},
    "dynamic-matmul-per-channel": {"mode": "dynamic", "per_channel": True, "op_types": ["MatMul"]},
    "static-per-channel": {"mode": "static", "per_channel": True, "op_types": None},
    "static-every-op": {"mode": "static", "per_channel": False, "op_types": "every"},
}


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_name", required=True)
    parser.add_argument("--glue_dir", required=True)
    parser.add_argument("--teacher", required=True, help="the fine-tuned teacher (the speedup reference)")
    parser.add_argument("--model", required=True, help="the float32 student checkpoint to quantize")
    parser.add_argument("--output_dir", required=True, help="<output_dir>/<variant> per variant")
    parser.add_argument("--report", required=True, help="markdown; .json next to it")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--calibration_rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variant_list if v not in VARIANTS]
    if unknown or not args.variant_list:
        parser.error(f"--variants: unknown {unknown} (choose from {', '.join(VARIANTS)})")
    for flag in ("teacher", "model"):
        if not (Path(getattr(args, flag)) / "config.json").is_file():
            parser.error(f"--{flag} {getattr(args, flag)} is not a model folder (no config.json)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    import compress
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertdistill.compression.onnx_runtime import export_onnx, quantize_onnx
    from bertdistill.glue_run import GlueRunArguments
    from glue_tasks import check_glue_dir, get_task

    task = get_task(args.task_name)
    check_glue_dir(task, args.glue_dir, ("train", task.eval_splits[0]))
    run_args = GlueRunArguments(task_name=task.name, glue_dir=args.glue_dir, max_seq_length=args.max_seq_length)
    output = Path(args.output_dir)
    float_dir = output / "float"
    if not (float_dir / "model.onnx").is_file():
        model = AutoModelForSequenceClassification.from_pretrained(args.model)
        export_onnx(model, AutoTokenizer.from_pretrained(args.model), float_dir)
    entries = [("teacher", Path(args.teacher), None), ("float32", Path(args.model), "teacher"),
               ("onnx-float", float_dir, "float32")]  # fmt: skip
    for name in args.variant_list:
        variant, folder = VARIANTS[name], output / name
        if not (folder / "model.onnx").is_file():
            calibration = None
            if variant["mode"] == "static":
                tokenizer = AutoTokenizer.from_pretrained(args.model)
                calibration = compress.calibration_batches(
                    task, args.glue_dir, tokenizer, args.calibration_rows, args.max_seq_length
                )
            quantize_onnx(
                float_dir,
                folder,
                mode=variant["mode"],
                calibration=calibration,
                per_channel=variant["per_channel"],
                op_types=op_types(variant),
                optimize=variant.get("optimize", False),
            )
        entries.append((name, folder, "float32"))
    rows = compress.measure(entries, task, run_args, args.repeats)
    report = {"task": task.name, "command": "python scripts/checks/compare_int8.py " + " ".join(sys.argv[1:] if argv
              is None else argv), "machine": compress.machine(), "metrics": list(task.metrics),
              "variants": {name: VARIANTS[name] for name in args.variant_list}, "rows": rows}  # fmt: skip
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report))
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(path.read_text())
    return report


def op_types(variant: dict) -> list[str] | None:
    if variant["op_types"] != "every":
        return variant["op_types"]
    from onnxruntime.quantization.registry import QDQRegistry

    return sorted(QDQRegistry)


def markdown(report: dict) -> str:
    metrics, rows = report["metrics"], report["rows"]
    lines = [
        f"# ONNX Runtime INT8 variants: {report['task']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}. Every model timed in one interleaved run on dev sentences; 'vs float32' "
        "is against the float32 PyTorch student in the same repeats.",
        "",
        "| model | " + " | ".join(metrics) + " | points vs float32 | size (MB) | b1 ms | b32 ms | vs float32 b1 | "
        "vs float32 b32 |",
        "|---" * (len(metrics) + 7) + "|",
    ]
    for row in rows:
        points = f"{row['points_vs_source']:+.2f}" if row["made_from"] == "float32" else ""
        faster = [f"{row[f'faster_than_source_b{n}']:.2f}x" if row["made_from"] == "float32" else "" for n in (1, 32)]
        lines.append(f"| {row['run']} | " + " | ".join(f"{row[m]:.4f}" for m in metrics)
                     + f" | {points} | {row['size_mb']:.1f} | {row['latency_b1_ms']:.2f} | "
                     f"{row['latency_b32_ms']:.1f} | {faster[0]} | {faster[1]} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
