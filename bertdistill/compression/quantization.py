"""INT8 dynamic quantization of a trained model for CPU inference, and what it weighs."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

INT8_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")


def _supported_engines() -> list[str]:
    return list(torch.backends.quantized.supported_engines)


def check_quantized_engine() -> str:
    """The quantized engine torch will run INT8 linear layers with; refuses a build or CPU without one."""
    supported = _supported_engines()
    engines = [e for e in supported if e in INT8_ENGINES]
    if not engines:
        raise ValueError(
            f"this torch build has no INT8 CPU engine (supported: {supported}); "
            "use ONNX Runtime INT8 instead (bertdistill.compression.onnx_runtime.quantize_onnx)"
        )
    current = torch.backends.quantized.engine
    return current if current in engines else engines[0]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers run with INT8 weights and dynamically quantized activations.

    CPU only (fbgemm on x86, qnnpack on ARM). Embeddings and LayerNorms stay in float32; for a BERT encoder the
    linear layers hold most of the compute and, without the embeddings, most of the weights.
    Raises `ValueError` when torch has no INT8 CPU kernels here (no quantized engine), before any work.
    """
    check_quantized_engine()
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU dynamic-INT8 path this simple.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def serialized_size(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: the size of a quantized model on disk (safetensors cannot hold
    packed INT8 linear weights)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
