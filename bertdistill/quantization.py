"""Kept for compatibility: INT8 quantization now lives in `bertdistill.compression.quantization`."""

from .compression.quantization import quantize_dynamic_int8, serialized_size

__all__ = ["quantize_dynamic_int8", "serialized_size"]
