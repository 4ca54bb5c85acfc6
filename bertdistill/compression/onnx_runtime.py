"""INT8 through ONNX Runtime: export a sequence classifier to ONNX, quantize it (dynamic, or static with calibration
on training rows), and run it like a transformers model for evaluation and side-by-side timing.

Why these libraries: ONNX Runtime's CPU INT8 kernels (VNNI / AVX512 integer GEMMs) are what make INT8 faster than
float32 on a CPU, where torch's eager dynamic quantization gains little at batch 1. `optimum-onnx` would wrap the
same two steps, but its release on PyPI (0.1.0) pins transformers < 4.58 and bertdistill runs on transformers 5, so
the export goes through `torch.onnx.export` and the quantization through `onnxruntime.quantization` directly.

Choices (measured side by side on the 2-core development CPU while it was shared; `scripts/checks/compare_int8.py`
compares the INT8 variants of one student, docs/int8/):
- The TorchScript exporter (`dynamo=False`) on an eager-attention copy: it traces BERT in seconds with dynamic batch
  and sequence axes, and its logits match PyTorch's to ~1e-6. Eager attention is the plain MatMul/Softmax graph
  that ONNX Runtime's quantizer knows.
- `quantize_onnx` defaults to ONNX Runtime's own defaults (dynamic, per-tensor INT8 weights), which
  `qat.QAT_SCHEMES["onnx_dynamic"]` mirrors; `scripts/compress.py` asks for per-channel weights, which lost less
  metric on MRPC and STS-B 4-layer students (0.53 and 0.82 points against 1.43) at no measurable latency cost.
  The word-embedding Gather is quantized too (4x smaller embeddings), which is most of a small model's bytes.
  ONNX Runtime's BERT graph optimizer (attention fusion) was slower, not faster, in an early probe, so it is off by
  default (`optimize=True` turns it on).
- x86 CPUs without VNNI (AVX2, or AVX512 without AVX512-VNNI / AVX-VNNI) run ONNX Runtime's uint8 x int8 matrix
  products with an instruction that adds each pair of products in saturating 16-bit integers: where a uint8
  activation near 255 meets an int8 weight near +-127 twice in a row, the sum is clipped at 32767, and the INT8 model's
  logits drift from what its integers say (9e-2 on the wide-weight tiny BERT of tests/test_qat.py, measured on such a
  machine; `x86_without_vnni()` tells which kind this CPU is). VNNI and ARM CPUs accumulate in 32 bits and are exact.
  `reduce_range=True` stores the linear layers' weights in [-64, 64] (ONNX Runtime's remedy), so no pair can
  saturate, on any CPU, for one bit of weight precision.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

ONNX_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
QUANTIZATION_MODES = ("dynamic", "static")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def x86_without_vnni(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this is an x86-64 CPU without VNNI, where ONNX Runtime's uint8 x int8 kernels add pairs of products in
    saturating 16-bit integers (see the module docstring); `False` on other architectures, on VNNI CPUs, and where
    `cpuinfo` (Linux's flag list) cannot be read."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    return flags is not None and not any(flag in flags for flag in VNNI_FLAGS)


def _check_runtime():
    import onnxruntime

    if "CPUExecutionProvider" not in onnxruntime.get_available_providers():
        raise ValueError(
            f"ONNX Runtime has no CPUExecutionProvider here (providers: {onnxruntime.get_available_providers()}); "
            "install the onnxruntime CPU package"
        )
    return onnxruntime


def export_onnx(model: PreTrainedModel, tokenizer, output_dir: str | os.PathLike, opset: int = 17) -> Path:
    """Write `model` as `output_dir/model.onnx` (inputs input_ids, attention_mask, token_type_ids; output logits;
    dynamic batch and sequence axes), with the tokenizer and `config.json` next to it, so the folder describes the
    whole model. Returns the folder.

    Raises:
        `ValueError`: for a model that is not a sequence classifier taking BERT's three inputs, or that the exporter
            cannot trace (the message names the class).
    """
    name = type(model).__name__
    if not name.endswith("ForSequenceClassification"):
        raise ValueError(f"export_onnx exports sequence classifiers, got {name}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    exported = copy.deepcopy(model).cpu().float().eval()
    exported.config._attn_implementation = "eager"  # the plain MatMul/Softmax graph ONNX Runtime quantizes
    encoded = tokenizer(["a first example sentence", "and a second, longer example sentence to pad"],
                        padding=True, return_tensors="pt")  # fmt: skip
    inputs = tuple(encoded[k] if k in encoded else torch.zeros_like(encoded["input_ids"]) for k in INPUT_NAMES)
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUT_NAMES} | {"logits": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
            torch.onnx.export(
                exported, inputs, str(output_dir / ONNX_FILE), input_names=list(INPUT_NAMES), output_names=["logits"],
                dynamic_axes=axes, opset_version=opset, dynamo=False,
            )  # fmt: skip
    except Exception as error:  # the exporter raises many types; the user needs the class that failed
        raise ValueError(f"export_onnx could not export a {name}: {error}") from error
    model.config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _onnx_file(folder: str | os.PathLike) -> Path:
    path = Path(folder) / ONNX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {ONNX_FILE} in {folder} (write it with export_onnx)")
    return path


STATIC_OP_TYPES = ("MatMul", "Gather")


def quantize_onnx(
    onnx_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    mode: str = "dynamic",
    calibration: list[dict[str, np.ndarray]] | None = None,
    per_channel: bool = False,
    optimize: bool = False,
    op_types: Sequence[str] | None = None,
    reduce_range: bool = False,
) -> Path:
    """INT8 copy of the ONNX model in `onnx_dir` written to `output_dir/model.onnx` (with its config and tokenizer).

    Args:
        mode (`str`, *optional*, defaults to `"dynamic"`): `"dynamic"` (INT8 weights, activations quantized on the
            fly per batch) or `"static"` (activation ranges fixed by calibration; QDQ format).
        calibration (`list[dict[str, np.ndarray]]`, *optional*): model inputs (input_ids, attention_mask,
            token_type_ids as int64 arrays), one dict per batch; required by `"static"`.
        per_channel (`bool`, *optional*, defaults to `False`): one weight scale per output channel.
        optimize (`bool`, *optional*, defaults to `False`): run ONNX Runtime's BERT graph optimizer first.
        op_types (`Sequence[str]`, *optional*): the ONNX operator types to quantize. Default for `"dynamic"`: every
            type ONNX Runtime can, which includes the embedding lookups (`Gather`); for `"static"`: `MatMul` and
            `Gather` only: static quantization of more operators (layer norms, reshapes, transposes, the attention
            mask's `Where`) compounds the MinMax-range error (4-layer STS-B student, Pearson/Spearman mean 0.824
            in float: 0.684 with every operator ONNX Runtime registers for QDQ, 0.781 with MatMul + Gather, 0.035 with
            ONNX Runtime's own default set, in the `static` variant of `scripts/checks/compare_int8.py` at commit
            5d00b86; dynamic per-channel: 0.816).
            `("MatMul",)` leaves the embeddings in float.
        reduce_range (`bool`, *optional*, defaults to `False`): store the linear layers' weights in [-64, 64]
            instead of [-127, 127] (the embedding tables keep their 8 bits): exact on x86 CPUs without VNNI, whose
            16-bit pair sums saturate with full-range weights (see the module docstring), for one bit less weight
            precision everywhere.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"mode must be one of {QUANTIZATION_MODES}, got {mode!r}")
    if mode == "static" and not calibration:
        raise ValueError("static quantization needs calibration batches (model inputs from training rows)")
    source = _onnx_file(onnx_dir)
    _check_runtime()
    import onnx
    from onnxruntime import quantization as q

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / ONNX_FILE
    if optimize:
        from onnxruntime.transformers.optimizer import optimize_model

        config = AutoConfig.from_pretrained(onnx_dir)
        optimized = optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)  # fmt: skip
        source = output_dir / "optimized.onnx"
        optimized.save_model_to_file(str(source))
    if op_types is None and mode == "static":
        op_types = STATIC_OP_TYPES
    ops = list(op_types) if op_types is not None else None
    # Fused (com.microsoft) nodes have no shape inference; their outputs are float.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "dynamic":
            q.quantize_dynamic(str(source), str(target), weight_type=q.QuantType.QInt8, per_channel=per_channel,
                               reduce_range=reduce_range, op_types_to_quantize=ops, extra_options=extra)  # fmt: skip
        else:
            q.quantize_static(str(source), str(target), _Calibration(calibration), quant_format=q.QuantFormat.QDQ,
                              per_channel=per_channel, reduce_range=reduce_range, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                              op_types_to_quantize=ops, extra_options=extra)  # fmt: skip
    if optimize:
        source.unlink()
    for item in Path(onnx_dir).iterdir():
        if item.suffix != ".onnx" and item.is_file() and not (output_dir / item.name).exists():
            (output_dir / item.name).write_bytes(item.read_bytes())
    settings = {"mode": mode, "per_channel": per_channel, "reduce_range": reduce_range, "optimize": optimize,
                "op_types": ops}  # fmt: skip
    (output_dir / "quantization.json").write_text(json.dumps(settings, indent=2) + "\n")
    return output_dir


class _Calibration:
    """The `CalibrationDataReader` protocol over a list of input dicts."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = iter([{k: np.asarray(v, dtype=np.int64) for k, v in b.items() if k in INPUT_NAMES}
                             for b in batches])  # fmt: skip

    def get_next(self):
        return next(self.batches, None)


def onnx_size(folder: str | os.PathLike) -> int:
    """Bytes of the ONNX model files (and external data) in `folder`."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".onnx", ".data"))


class OnnxSequenceClassifier:
    """An ONNX folder (from [`export_onnx`] or [`quantize_onnx`]) run by ONNX Runtime on the CPU, called like a
    transformers model: keyword torch tensors in (labels ignored), an output with `.logits` (a torch tensor) out.

    Args:
        folder (`str`): the folder holding `model.onnx` and `config.json`.
        num_threads (`int`, *optional*): intra-op threads (default: torch's thread count, so that both runtimes
            get the same cores when timed side by side).
        allow_spinning (`bool`, *optional*, defaults to `False`): let ONNX Runtime's idle worker threads spin
            (ONNX Runtime's own default). Off here because spinning threads keep a core busy after each run, which
            slows whatever runs next in the process: timed side by side with PyTorch models on 2 cores, it made the
            model after the ONNX sessions several times slower and every speedup over it wrong. Turn it on for a
            process that runs nothing but this session.
    """

    def __init__(self, folder: str | os.PathLike, num_threads: int | None = None, allow_spinning: bool = False):
        path = _onnx_file(folder)
        ort = _check_runtime()
        self.folder = Path(folder)
        self.config = AutoConfig.from_pretrained(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def eval(self):
        return self

    def __call__(self, **inputs) -> SequenceClassifierOutput:
        ids = inputs["input_ids"]
        feed = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:  # a tokenizer without token types: all zeros, as BERT assumes
                value = torch.zeros_like(ids) if name == "token_type_ids" else torch.ones_like(ids)
            feed[name] = value.cpu().numpy().astype(np.int64)
        (logits,) = self.session.run(["logits"], feed)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))


def evaluate_onnx(model: OnnxSequenceClassifier, dataset, tokenizer, task, batch_size: int = 64) -> dict[str, float]:
    """`eval_*` metrics of an ONNX model on a tokenized split, like `bertdistill.glue_run.evaluate_model` (dynamic
    padding, batches in the dataset's order)."""
    from transformers import DataCollatorWithPadding

    from glue_tasks.metrics import glue_metrics

    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    columns = [c for c in dataset.column_names if c in INPUT_NAMES]
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select_columns(columns).select(range(start, min(start + batch_size, len(dataset))))
        batch = collate([rows[i] for i in range(len(rows))])
        logits.append(model(**batch).logits.numpy())
    metrics = glue_metrics(task, np.concatenate(logits), np.asarray(dataset["label"]))
    return {f"eval_{name}": value for name, value in metrics.items()}
