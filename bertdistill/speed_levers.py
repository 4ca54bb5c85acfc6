"""Speed levers a distillation run picks by itself, and how each choice is recorded.

A lever is an option that makes training faster without changing what it learns: length-grouped batches, cached
teacher outputs, bf16 autocast where the hardware computes in bf16 natively. Each is a config field whose default
lets bertdistill choose (`None`, resolved by the config or the trainer) and which the user can set either way. The
trainer keeps one [`LeverChoice`] per lever in `trainer.speed_levers`; `train_results.json` (as `speed_levers`) and
the model card carry them.

Native bf16 is detected, never assumed: a CUDA device counts when `torch.cuda.is_bf16_supported(including_emulation=
False)` says so (Ampere and newer), a CPU when it has AMX-BF16 or AVX512-BF16 instructions (`/proc/cpuinfo` flags,
else torch's own CPU probe). Anything else (older GPUs, other accelerators, CPUs without those instructions, where
bf16 is emulated and slower than fp32) keeps fp32.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Who decided a lever's value: bertdistill's default, bertdistill from what it detected, or the user.
SOURCES = ("default", "auto", "user")
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


@dataclass
class LeverChoice:
    """The value a lever took, who chose it (`"default"`, `"auto"` or `"user"`) and why."""

    value: object
    source: str
    reason: str = ""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")

    def describe(self) -> str:
        """`value (source: reason)`, as the model card shows it."""
        detail = f"{self.source}: {self.reason}" if self.reason else self.source
        return f"{self.value} ({detail})"

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags of `/proc/cpuinfo` (Linux), `None` where there is no such file."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_bf16_instructions(flags: set[str] | None = None) -> str | None:
    """The CPU's native bf16 instructions (`"AMX-BF16"` or `"AVX512-BF16"`), `None` without any.

    `flags` defaults to [`cpu_flags`]; without `/proc/cpuinfo` torch's CPU probe (`torch.cpu._is_amx_tile_supported`,
    `torch.cpu._is_avx512_bf16_supported`, private helpers, used only where present) answers instead.
    """
    flags = cpu_flags() if flags is None else flags
    if flags is not None:
        return next((name for flag, name in CPU_BF16_FLAGS.items() if flag in flags), None)
    for probe, name in (("_is_amx_tile_supported", "AMX-BF16"), ("_is_avx512_bf16_supported", "AVX512-BF16")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return name
    return None


def accelerator_type() -> str | None:
    """The accelerator torch would train on (`"cuda"`, `"mps"`, `"xpu"`, ...), `None` on a CPU-only machine."""
    if torch.cuda.is_available():
        return "cuda"
    current = getattr(torch, "accelerator", None)
    if current is not None and current.is_available():
        return current.current_accelerator().type
    return None


def native_bf16(use_cpu: bool = False) -> tuple[bool, str]:
    """Whether training would run bf16 natively here, and the reason, e.g. `(True, "CPU with AVX512-BF16")`.

    Args:
        use_cpu (`bool`, *optional*, defaults to `False`): the run trains on the CPU even if an accelerator is present
            (`TrainingArguments.use_cpu`).
    """
    device = None if use_cpu else accelerator_type()
    if device is None:
        instructions = cpu_bf16_instructions()
        if instructions:
            return True, f"CPU with {instructions}"
        return False, "CPU without AMX-BF16 or AVX512-BF16 (bf16 would be emulated)"
    if device == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"CUDA {name} computes bf16 natively"
        return False, f"CUDA {name} has no native bf16"
    return False, f"native bf16 is not detected on {device}"


def choose(requested, auto_value, reason: str, default_source: str = "auto") -> LeverChoice:
    """The choice for a lever the user set to `requested` (`None`: not set, take `auto_value` for `reason`)."""
    if requested is None:
        return LeverChoice(auto_value, default_source, reason)
    return LeverChoice(requested, "user")


def log_choices(choices: dict[str, LeverChoice]) -> None:
    """One log line per lever: what it is and who chose it."""
    for name, choice in choices.items():
        logger.info("Speed lever %s = %s", name, choice.describe())
