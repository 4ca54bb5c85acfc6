#!/usr/bin/env python
"""Does quantization-aware distillation make the INT8 student lose less? A real SST-2 check.

    python scripts/checks/check_qat.py --teacher runs/throughput/sst2_teacher --glue_dir ../shared/glue_data \\
        --output_md docs/qat.md --output_json docs/qat.json

A 3-layer student (`build_student(teacher, num_layers=3)`: every other teacher layer) is distilled from the fine-tuned
teacher with the KD loss for --max_steps steps on the first --train_rows SST-2 training rows, once plainly and once per
--schemes with `prepare_qat(student, scheme)` (the same seed, data order and hyper-parameters). Every trained student
is then quantized to INT8 by each scheme's deployment (`quantize_for_deployment`: torch dynamic INT8, or ONNX Runtime
dynamic INT8 when `bertdistill.compression.onnx_runtime` is there), and the float and INT8 dev accuracies are reported,
with how far INT8 moves the dev logits (mean absolute change) and how many predictions it flips: the plain student
under every INT8 deployment, each QAT student under its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bertdistill import DistillationTrainer, DistillationTrainingConfig, build_student  # noqa: E402
from bertdistill.compression.qat import QAT_SCHEMES, convert_qat, prepare_qat, quantize_for_deployment  # noqa: E402
from bertdistill.glue_run import tokenize_split  # noqa: E402
from glue_tasks import get_task, load_glue_split  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=str(REPO / "runs/throughput/sst2_teacher"))
    parser.add_argument("--glue_dir", default=str(REPO.parent / "shared/glue_data"))
    parser.add_argument("--schemes", default="torch_dynamic,onnx_dynamic", help=f"from {', '.join(QAT_SCHEMES)}")
    parser.add_argument("--train_rows", type=int, default=8000)
    parser.add_argument("--max_steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output_md", default=None)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args(argv)
    args.schemes = [name.strip() for name in args.schemes.split(",") if name.strip()]
    unknown = [name for name in args.schemes if name not in QAT_SCHEMES]
    if unknown:
        parser.error(f"unknown schemes {unknown}; valid ones: {', '.join(QAT_SCHEMES)}")
    if "onnx_dynamic" in args.schemes and importlib.util.find_spec("bertdistill.compression.onnx_runtime") is None:
        print("bertdistill.compression.onnx_runtime is not there: skipping the onnx_dynamic scheme", file=sys.stderr)
        args.schemes.remove("onnx_dynamic")
    if not args.schemes:
        parser.error("no scheme left to check")
    return args


def distill(teacher, tokenizer, train, args, output_dir: str, scheme: str | None):
    torch.manual_seed(args.seed)
    student = build_student(teacher, num_layers=3)
    if scheme is not None:
        prepare_qat(student, scheme)
    config = DistillationTrainingConfig(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        warmup_steps=args.max_steps // 10,
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        use_cpu=True,
    )
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=config, train_dataset=train, processing_class=tokenizer
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return (convert_qat(trainer.student) if scheme is not None else trainer.student).eval(), seconds


@torch.inference_mode()
def dev_logits(model, dev, tokenizer, batch_size: int = 64) -> torch.Tensor:
    """Logits of every dev row, in order (`model`: a transformers model or an `OnnxSequenceClassifier`)."""
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    inputs = dev.remove_columns("label")
    model.eval()
    chunks = []
    for start in range(0, len(inputs), batch_size):
        batch = collate([inputs[i] for i in range(start, min(start + batch_size, len(inputs)))])
        chunks.append(torch.as_tensor(model(**batch).logits).float())
    return torch.cat(chunks)


def int8_logits(model, scheme: str, tokenizer, dev, workdir: Path) -> torch.Tensor:
    deployed = quantize_for_deployment(model, scheme=scheme, tokenizer=tokenizer, output_dir=workdir)
    if isinstance(deployed, Path):
        from bertdistill.compression.onnx_runtime import OnnxSequenceClassifier

        deployed = OnnxSequenceClassifier(deployed)
    return dev_logits(deployed, dev, tokenizer)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def main(argv=None):
    args = parse_args(argv)
    task = get_task("sst2")
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    raw = load_glue_split(task, "train", args.glue_dir)
    train = tokenize_split(raw.select(range(min(args.train_rows, len(raw)))), task, tokenizer, args.max_seq_length)
    dev = tokenize_split(load_glue_split(task, "validation", args.glue_dir), task, tokenizer, args.max_seq_length)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = torch.tensor(dev["label"])
        teacher_accuracy = accuracy(dev_logits(teacher, dev, tokenizer), labels)
        for training in [None, *args.schemes]:
            student, seconds = distill(teacher, tokenizer, train, args, str(tmp / f"train-{training}"), training)
            float_logits = dev_logits(student, dev, tokenizer)
            for deployment in args.schemes if training is None else [training]:
                int8 = int8_logits(student, deployment, tokenizer, dev, tmp / f"int8-{training}-{deployment}")
                rows.append(
                    {
                        "training": "plain KD" if training is None else f"QAT ({training})",
                        "int8": deployment,
                        "float_accuracy": accuracy(float_logits, labels),
                        "int8_accuracy": accuracy(int8, labels),
                        "int8_loss": accuracy(float_logits, labels) - accuracy(int8, labels),
                        # More sensitive than accuracy on 872 rows: how far INT8 moves the logits, and how many
                        # predictions it flips.
                        "mean_abs_logit_change": (int8 - float_logits).abs().mean().item(),
                        "flipped_predictions": int((int8.argmax(-1) != float_logits.argmax(-1)).sum()),
                        "train_seconds": round(seconds, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    machine = f"{cpu or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    result = {"args": vars(args), "teacher_accuracy": teacher_accuracy, "machine": machine, "rows": rows}
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")
    if args.output_md:
        lines = [
            "| training | INT8 deployment | float dev acc. | INT8 dev acc. | INT8 loss | mean abs. logit change | "
            "flipped predictions | train s |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['training']} | {r['int8']} | {r['float_accuracy']:.4f} | {r['int8_accuracy']:.4f} | "
                f"{r['int8_loss']:+.4f} | {r['mean_abs_logit_change']:.4f} | {r['flipped_predictions']} of {len(dev)} "
                f"| {r['train_seconds']} |"
                for r in rows
            ),
        ]
        Path(args.output_md).write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
