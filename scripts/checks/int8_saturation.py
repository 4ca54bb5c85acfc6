#!/usr/bin/env python
"""Is ONNX Runtime's INT8 model the model the fake quantization trained? On x86 CPUs without VNNI it may not be.

    python scripts/checks/int8_saturation.py

Takes the wide-weight tiny BERT of tests/test_qat.py (the same model and batch, imported from tests/), and for each
ONNX scheme of `bertdistill.compression.qat` prints the largest logit gap between

- the fake-quantized model and ONNX Runtime's INT8 model run on this CPU (`quantize_for_deployment`),
- the fake-quantized model and a simulation of the saturating kernel: every `FakeQuantLinear` computes its integer
  product the way an x86 CPU without VNNI does (uint8 activations x int8 weights, each pair of neighbouring products
  along the inner dimension added and clipped to int16, `vpmaddubsw`, then summed in int32),
- the float model and the INT8 model (how much INT8 moves the logits at all).

On a CPU with VNNI the first gap is float rounding (~1e-7) for both schemes; on one without, the INT8 model follows
the simulation for `onnx_dynamic`, while `onnx_dynamic_reduce_range` (weights in [-64, 64], so a pair sum stays below
32767) has no saturation to simulate and stays exact. See docs/qat.md.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bertdistill.compression import qat  # noqa: E402
from bertdistill.compression.onnx_runtime import OnnxSequenceClassifier, x86_without_vnni  # noqa: E402

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1


def saturating_linear(self: qat.FakeQuantLinear, x: torch.Tensor) -> torch.Tensor:
    """The scheme's integer product with pairs of products added in saturating int16 (x86 without VNNI)."""
    scheme = self.qat_scheme
    x_scale, x_zero = qat.asymmetric_qparams(x, scheme.activation_qmax)
    activations = torch.clamp(torch.round(x / x_scale) + x_zero, 0, scheme.activation_qmax).double()
    w_scale, _ = scheme.weight_qparams(self.weight)
    weights = torch.clamp(torch.round(self.weight / w_scale), scheme.weight_qmin, scheme.weight_qmax).double().t()
    total = 0
    for k in range(0, weights.shape[0], 2):  # neighbouring pairs along the inner dimension
        pair = activations[..., k : k + 2] @ weights[k : k + 2]
        total = total + pair.clamp(INT16_MIN, INT16_MAX)
    total = total - x_zero.double() * weights.sum(0)  # the activation zero point, subtracted in int32
    return (total * x_scale.double() * w_scale.double()).to(x.dtype) + self.bias


@contextmanager
def simulated_saturation():
    forward = qat.FakeQuantLinear.forward
    qat.FakeQuantLinear.forward = saturating_linear
    try:
        yield
    finally:
        qat.FakeQuantLinear.forward = forward


@torch.no_grad()
def main() -> None:
    from test_qat import batch, prepared_student

    from conftest import tiny_tokenizer

    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []  # fmt: skip
    cpu = names[0] if names else platform.processor() or platform.machine()
    print(f"CPU: {cpu}; x86 without VNNI: {x86_without_vnni()}; torch {torch.__version__}")
    print("| scheme | fake vs INT8 here | fake vs simulated saturation | float vs INT8 here |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tiny_tokenizer(Path(tmp))
        for scheme in ("onnx_dynamic", "onnx_dynamic_reduce_range"):
            model = prepared_student(tokenizer, scheme=scheme)
            inputs = batch(tokenizer)
            fake = model(**inputs).logits
            with simulated_saturation():
                simulated = model(**inputs).logits
            float_logits = qat.convert_qat(model)(**inputs).logits
            folder = qat.quantize_for_deployment(model, tokenizer=tokenizer, output_dir=Path(tmp) / scheme)
            int8 = OnnxSequenceClassifier(folder)(**inputs).logits

            def gap(a, b):
                return f"{(a - b).abs().max().item():.2e}"

            print(f"| {scheme} | {gap(fake, int8)} | {gap(fake, simulated)} | {gap(float_logits, int8)} |")


if __name__ == "__main__":
    main()
