"""Quantization-aware distillation: a student whose forward sees the rounding of the INT8 model it will be deployed
as, trained with any bertdistill trainer against the float teacher, so that its weights learn to be robust to that
rounding; afterwards a plain float checkpoint that quantizes to INT8 with less loss.

Usage:

```python
student = prepare_qat(build_student(teacher, num_layers=3), scheme="onnx_dynamic")  # in place
DistillationTrainer(model=student, teacher_model=teacher, args=config, ...).train()
convert_qat(student).save_pretrained(out)  # a stock float checkpoint
quantize_for_deployment(student, tokenizer=tokenizer, output_dir=out / "int8")  # the INT8 model it was trained for
```

**The fake quantization mirrors the deployed INT8 kernels exactly**, one scheme per deployment path (`QAT_SCHEMES`):

- `"onnx_dynamic"` (default): ONNX Runtime's `quantize_dynamic` with its defaults (`onnx_runtime.quantize_onnx(...,
  mode="dynamic")`, the `int8` stage of `scripts/compress.py`). Every linear layer (encoder, pooler and classifier:
  ONNX Runtime turns the Gemm of a 2-D linear into a MatMul and quantizes it too) gets int8 weights, symmetric per
  tensor in [-127, 127] (scale `max|w| / 127`), and uint8 activations, asymmetric per tensor over the whole input
  tensor, computed on the fly (`DynamicQuantizeLinear`: scale `(max(x, 0) - min(x, 0)) / 255`, zero point
  `round(-min(x, 0) / scale)`). The word, position and token-type embedding tables are stored as uint8, asymmetric
  per tensor (its `Gather` quantization: `onnx_runtime.export_onnx`, the TorchScript exporter, keeps all three
  lookups as Gathers; the dynamo exporter would turn the position lookup into a slice, which stays float).
- `"onnx_dynamic_reduce_range"`: the same with `quantize_onnx(..., reduce_range=True)`: the linear layers' weights in
  [-64, 64] (scale `max|w| / 64`), the embeddings as above. Choose it for x86 CPUs without VNNI (see below).
- `"torch_dynamic"`: torch's `quantize_dynamic_int8` (fbgemm / x86): every `nn.Linear`, int8 weights symmetric per
  tensor in [-128, 127] (scale `max|w| / 127.5`, torch's `MinMaxObserver`), activations quantized on the fly per
  tensor with fbgemm's reduced range, [0, 127] (`DynamicQuantizedLinear` calls `linear_dynamic(...,
  reduce_range=True)`); embeddings stay float.

ONNX Runtime's static INT8 (`quantize_onnx(..., mode="static")`) has no scheme of its own: its weights are
`onnx_dynamic`'s, but its activation ranges are fixed by calibration where `onnx_dynamic`'s follow each batch.

All round half to even and are pinned by the tests against the real INT8 models: the fake-quantized logits of a
tiny BERT equal ONNX Runtime's INT8 logits (and torch's) to float rounding, ~1e-7, where INT8 moves them by ~1e-2.
One exception, a property of the deployment CPU: on x86 CPUs without VNNI, ONNX Runtime adds each pair of uint8 x
int8 products in saturating 16-bit integers, which full-range weights can overflow (`onnx_runtime.x86_without_vnni`);
there the `"onnx_dynamic"` INT8 model is not the model it was trained as (9e-2 apart on the test's wide-weight tiny
BERT, and a simulation of the saturating sums reproduces that gap), while `"onnx_dynamic_reduce_range"` cannot
overflow and stays exact.
Quantization parameters are recomputed from the current weights and activations at every forward, as the deployed
model computes them, and carry no gradient; rounding and clamping pass the gradient straight through
(`torch.fake_quantize_per_tensor_affine`: 1 inside the integer range, 0 where a value was clamped).

**Why not torchao's QAT** (`torchao.quantization.qat`, 0.18): its fake quantization does not match either fast CPU INT8
path, and what it converts to is slower than float here. `QATConfig` accepts one int8-activation / int8-weight base
config, `Int8DynamicActivationIntxWeightConfig` (unpacked to int8), whose activations are quantized per token, not per
tensor; its converted model quantizes and dequantizes around a float matmul (made for ExecuTorch, not for server CPUs).
Measured on the MiniLM SST-2 teacher (6 x 384, length 64, 1 thread, 2-core AMD EPYC with AVX512-VNNI, other jobs
running; `measure_side_by_side`): float 26.0 ms / 680 ms at batch 1 / 32; torchao's QAT-converted model 78.1 ms / 1010
ms (0.32x / 0.67x); torchao's `Int8DynamicActivationInt8WeightConfig`, which `QATConfig` refuses, 36.3 ms / 623 ms
(0.70x / 1.10x); torch's `quantize_dynamic_int8` 10.2 ms / 261 ms (2.49x / 2.62x). ONNX Runtime is the pipeline's INT8
path. So the fake quantizer here is the torch op plus the few lines that choose its scale and zero point the way the
deployed kernels do.

A prepared layer changes class in place (as `add_sparsity_masks` and `make_elastic` do) and keeps its parameters under
their names, with no buffer added: a checkpoint written during training is a stock one (`from_pretrained` loads the
float weights), and resuming loads it back into the prepared student. The scheme's name goes into
`model.config.qat_scheme`, so a saved checkpoint says which INT8 model it was trained for.

Fake quantization runs on any device; the INT8 deployments run on CPU. Under bf16 autocast the dequantized values are
further rounded to bf16 by the matmul, a smaller error than the int8 rounding but one the deployed model does not make.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class QATScheme:
    """An INT8 scheme to fake-quantize with: what a deployment path rounds, and how.

    Args:
        name (`str`): the key in `QAT_SCHEMES`.
        deployment (`str`): the INT8 model this mirrors (shown in error messages).
        weight_qmin (`int`): the lowest integer of a linear layer's weights (symmetric, zero point 0).
        weight_qmax (`int`): the highest.
        activation_qmax (`int`): a linear layer's input is quantized to [0, `activation_qmax`], asymmetric.
        embeddings (`tuple[str, ...]`, *optional*, defaults to `()`): the `nn.Embedding` modules (last name of their
            path) whose tables are stored as uint8, asymmetric per tensor.
    """

    name: str
    deployment: str
    weight_qmin: int
    weight_qmax: int
    activation_qmax: int
    embeddings: tuple[str, ...] = ()

    def weight_qparams(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point of a linear layer's weight: symmetric, `max|w| / ((qmax - qmin) / 2)`."""
        scale = weight.detach().abs().max().float() / ((self.weight_qmax - self.weight_qmin) / 2)
        # An all-zero weight has no range; any positive scale rounds it to zeros.
        scale = scale.clamp(min=torch.finfo(torch.float32).tiny)
        return scale, torch.zeros((), dtype=torch.int32, device=weight.device)

    def fake_quantize_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """`weight` quantized to the scheme's int8 weights and back to float."""
        scale, zero_point = self.weight_qparams(weight)
        return _fake_quantize(weight, scale, zero_point, self.weight_qmin, self.weight_qmax)

    def fake_quantize_activation(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (the input of a linear layer, any shape) quantized to [0, `activation_qmax`] and back."""
        scale, zero_point = asymmetric_qparams(x, self.activation_qmax)
        return _fake_quantize(x, scale, zero_point, 0, self.activation_qmax)

    def fake_quantize_embedding(self, table: torch.Tensor) -> torch.Tensor:
        """An embedding table quantized to uint8, asymmetric per tensor, and back."""
        scale, zero_point = asymmetric_qparams(table, 255)
        return _fake_quantize(table, scale, zero_point, 0, 255)


def asymmetric_qparams(x: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that map the range of `x`, widened to include 0, onto [0, `qmax`]: `scale = (max(x, 0) -
    min(x, 0)) / qmax`, `zero_point = round(-min(x, 0) / scale)` (half to even), as ONNX Runtime's
    `DynamicQuantizeLinear` and fbgemm's `ChooseQuantizationParams` compute them. No gradient."""
    low, high = torch.aminmax(x.detach())
    low, high = low.float().clamp(max=0), high.float().clamp(min=0)
    scale = ((high - low) / qmax).clamp(min=torch.finfo(torch.float32).tiny)
    zero_point = torch.round(-low / scale).clamp(0, qmax).to(torch.int32)
    return scale, zero_point


def _fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int):
    # The torch op wants float32 (bf16 arrives under autocast); the result goes back to the caller's dtype.
    out = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, qmin, qmax)
    return out.to(x.dtype)


_ONNX_DYNAMIC = QATScheme(
    name="onnx_dynamic",
    deployment="ONNX Runtime dynamic INT8 (onnx_runtime.quantize_onnx(..., mode='dynamic'))",
    weight_qmin=-127,
    weight_qmax=127,
    activation_qmax=255,
    embeddings=("word_embeddings", "position_embeddings", "token_type_embeddings"),
)

QAT_SCHEMES: dict[str, QATScheme] = {
    "onnx_dynamic": _ONNX_DYNAMIC,
    # the same deployment with ONNX Runtime's reduce_range: only the linear layers' weight range differs
    "onnx_dynamic_reduce_range": dataclasses.replace(
        _ONNX_DYNAMIC,
        name="onnx_dynamic_reduce_range",
        deployment="ONNX Runtime dynamic INT8 with 7-bit weights (onnx_runtime.quantize_onnx(..., mode='dynamic', "
        "reduce_range=True))",
        weight_qmin=-64,
        weight_qmax=64,
    ),
    "torch_dynamic": QATScheme(
        name="torch_dynamic",
        deployment="torch dynamic INT8 (quantize_dynamic_int8, fbgemm / x86)",
        weight_qmin=-128,
        weight_qmax=127,
        activation_qmax=127,
    ),
}


def get_qat_scheme(scheme: str | QATScheme) -> QATScheme:
    """The scheme named `scheme` (a `QATScheme` passes through).

    Raises:
        `ValueError`: for an unknown name, listing the valid ones.
    """
    if isinstance(scheme, QATScheme):
        return scheme
    if scheme not in QAT_SCHEMES:
        raise ValueError(f"Unknown QAT scheme {scheme!r}; valid ones: {', '.join(QAT_SCHEMES)}")
    return QAT_SCHEMES[scheme]


# ---- fake-quantized layers ------------------------------------------------------------------------------------------


class FakeQuantLinear(nn.Linear):
    """`nn.Linear` whose forward fake-quantizes its input and weight (the bias stays float, as in both deployments).
    `qat_scheme` and `fake_quant_enabled` are plain attributes, not state: the state dict is the `nn.Linear`'s."""

    qat_scheme: QATScheme
    fake_quant_enabled: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fake_quant_enabled:
            return F.linear(x, self.weight, self.bias)
        scheme = self.qat_scheme
        return F.linear(scheme.fake_quantize_activation(x), scheme.fake_quantize_weight(self.weight), self.bias)


class FakeQuantEmbedding(nn.Embedding):
    """`nn.Embedding` that looks up rows of its fake-quantized table (see [`FakeQuantLinear`] for the attributes)."""

    qat_scheme: QATScheme
    fake_quant_enabled: bool

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.qat_scheme.fake_quantize_embedding(self.weight) if self.fake_quant_enabled else self.weight
        return F.embedding(
            input, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )


FAKE_QUANT_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: FakeQuantLinear,
    nn.Embedding: FakeQuantEmbedding,
}


def fake_quant_modules(model: nn.Module) -> dict[str, FakeQuantLinear | FakeQuantEmbedding]:
    """The fake-quantized modules of `model`, by name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (FakeQuantLinear, FakeQuantEmbedding))
    }


def prepare_qat(model: nn.Module, scheme: str | QATScheme = "onnx_dynamic") -> nn.Module:
    """Fake-quantize `model` **in place** for quantization-aware training, the way the INT8 deployment of `scheme`
    will quantize it; returns `model`.

    Every `nn.Linear` (encoder, pooler, classifier: both deployments quantize them all) becomes a [`FakeQuantLinear`],
    and the embedding tables of `scheme.embeddings` become [`FakeQuantEmbedding`]s. Parameters stay the same objects
    under the same names, so the model trains, saves and resumes with any bertdistill trainer as before. A model
    prepared with the same scheme already is left as it is.

    Args:
        model (`nn.Module`): the student, e.g. a `BertForSequenceClassification`.
        scheme (`str` or `QATScheme`, *optional*, defaults to `"onnx_dynamic"`): a key of `QAT_SCHEMES`, the INT8
            model the student will be deployed as.

    Raises:
        `ValueError`: for an unknown scheme, a model without linear layers, a model prepared with another scheme, or
        a linear layer that is not a plain `nn.Linear` (a sparsity mask or DynaBERT's elastic width: their forward
        would be replaced).
    """
    scheme = get_qat_scheme(scheme)
    prepared = fake_quant_modules(model)
    others = {module.qat_scheme.name for module in prepared.values()} - {scheme.name}
    if others:
        raise ValueError(
            f"{type(model).__name__} is prepared for QAT with scheme {sorted(others)[0]!r} already, not "
            f"{scheme.name!r}: convert_qat it first"
        )
    targets = {}
    for name, module in model.named_modules():
        if name in prepared:
            continue
        if isinstance(module, nn.Linear):
            if type(module) is not nn.Linear:
                raise ValueError(
                    f"QAT fake-quantizes plain nn.Linear layers; {name} is an {type(module).__name__}, whose own "
                    "forward (a sparsity mask, an elastic width) QAT would replace. Remove the masks or export the "
                    "sub-network first"
                )
            targets[name] = module
        elif type(module) is nn.Embedding and name.rsplit(".", 1)[-1] in scheme.embeddings:
            targets[name] = module
    if not any(isinstance(module, nn.Linear) for module in [*targets.values(), *prepared.values()]):
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer to fake-quantize; QAT needs the linear layers that "
            f"{scheme.deployment} quantizes"
        )
    for module in targets.values():
        module.__class__ = FAKE_QUANT_CLASSES[type(module)]
        module.qat_scheme = scheme
        module.fake_quant_enabled = True
    config = getattr(model, "config", None)
    if config is not None:
        config.qat_scheme = scheme.name
    return model


def set_fake_quant(model: nn.Module, enabled: bool) -> None:
    """Turn the fake quantization of a prepared `model` on or off (off: the float forward of the same weights, e.g. to
    evaluate the float model mid-training).

    Raises:
        `ValueError`: when `model` was not prepared with [`prepare_qat`].
    """
    modules = fake_quant_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no fake-quantized layer; call prepare_qat first")
    for module in modules.values():
        module.fake_quant_enabled = enabled


def convert_qat(model: nn.Module) -> nn.Module:
    """Remove the fake quantization from a prepared `model` **in place**; returns `model`, a plain float model with the
    trained weights (its `save_pretrained` writes a stock checkpoint). `model.config.qat_scheme` stays: it names the
    INT8 deployment the weights were trained for ([`quantize_for_deployment`]).

    Raises:
        `ValueError`: when `model` was not prepared with [`prepare_qat`].
    """
    modules = fake_quant_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no fake-quantized layer; call prepare_qat first")
    for module in modules.values():
        del module.qat_scheme, module.fake_quant_enabled
        module.__class__ = nn.Linear if isinstance(module, nn.Linear) else nn.Embedding
    return model


def quantize_for_deployment(
    model: nn.Module,
    scheme: str | QATScheme | None = None,
    tokenizer=None,
    output_dir: str | os.PathLike | None = None,
) -> nn.Module | Path:
    """The INT8 model that the fake quantization of `scheme` stood for, from a converted (float) `model`.

    - `"torch_dynamic"`: returns `quantize_dynamic_int8(model)`, a copy with dynamically quantized `nn.Linear`s (CPU).
    - `"onnx_dynamic"` and `"onnx_dynamic_reduce_range"`: exports `model` to ONNX in `output_dir/float` and writes
      its ONNX Runtime dynamic INT8 quantization (7-bit weights for the second) into `output_dir`
      (`bertdistill.compression.onnx_runtime`'s `export_onnx` and `quantize_onnx`); returns `Path(output_dir)`.

    Args:
        model (`nn.Module`): the trained student after [`convert_qat`] (or any float model).
        scheme (`str` or `QATScheme`, *optional*): defaults to `model.config.qat_scheme`, set by [`prepare_qat`].
        tokenizer (*optional*): saved next to the ONNX model; needed by the ONNX schemes.
        output_dir (`str` or `os.PathLike`, *optional*): where the ONNX models go; needed by the ONNX schemes.

    Raises:
        `ValueError`: for an unknown scheme, no scheme given for a model without `config.qat_scheme`, a model still
        fake-quantized, or an ONNX scheme without `tokenizer` and `output_dir`.
    """
    if scheme is None:
        scheme = getattr(getattr(model, "config", None), "qat_scheme", None)
        if scheme is None:
            raise ValueError(f"Name the scheme: {type(model).__name__} has no config.qat_scheme from prepare_qat")
    scheme = get_qat_scheme(scheme)
    if fake_quant_modules(model):
        raise ValueError("The model is still fake-quantized: call convert_qat before quantizing it for deployment")
    if scheme.name == "torch_dynamic":
        from .quantization import quantize_dynamic_int8

        return quantize_dynamic_int8(model)
    if tokenizer is None or output_dir is None:
        raise ValueError(f"Scheme {scheme.name!r} exports to ONNX: pass tokenizer and output_dir")
    # Imported here: ONNX Runtime is part of the optional compress extra.
    from .onnx_runtime import export_onnx, quantize_onnx

    output_dir = Path(output_dir)
    export_onnx(model, tokenizer, output_dir / "float")
    # ONNX Runtime's reduce_range is its 7-bit weight range, [-64, 64].
    quantize_onnx(output_dir / "float", output_dir, mode="dynamic", reduce_range=scheme.weight_qmax < 127)
    return output_dir
