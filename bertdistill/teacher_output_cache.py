"""Intermediate teacher outputs computed once, memory-mapped from disk, for losses on hidden states and attentions.

A frozen teacher in eval mode gives the same outputs for an example in every epoch, so intermediate distillation
(TinyBERT's intermediate stage, Patient-KD, DistilBERT's task mode) can run it in one pass over the training set and
read its outputs back each epoch. Only what the loss reads is kept: the hidden states of the mapped teacher layers,
the attention scores of the recorded layers (see `bertdistill.attention`) and the logits.

Storage. One folder per cache, named by a key: the SHA-256 of the training rows' model inputs (their token ids
themselves, so the key does not depend on how `datasets` fingerprints, or whether it caches), the teacher's weights and
config ([`teacher_digest`]), the layers and features kept and the precision of the teacher pass. Inside, one flat
float16 `.npy` file per feature, read with `numpy.load(mmap_mode="r")`, holds every row unpadded, one after the other
(hidden states `(layers, L, H)`, attention scores `(layers, heads, L, L)` for a row of `L` tokens); `lengths.npy` gives
each row's length, from which its offset follows; logits are float32 `(rows, labels)`. A memory map was chosen over an
Arrow column because a batch then costs one contiguous slice per row and feature, read from the page cache without
copying through Python lists, in half the bytes of float32, and rows of any length need no padding on disk.
A folder is written under a temporary name and renamed when complete, so a reader never sees half a cache.

Training rows carry their index in a `teacher_row` column; [`TeacherOutputCache.outputs`] pads each row's stored
outputs to the batch (zeros at padded positions, as the attention scores are there; every token loss ignores padded
positions) and returns them shaped as a live teacher's: `hidden_states` a tuple indexed like
`output_hidden_states` (`None` for layers not kept), `attentions` the recorded layers' scores in layer order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from transformers.modeling_outputs import SequenceClassifierOutput

from .teacher_cache import MODEL_INPUTS, teacher_digest

TEACHER_ROW_COLUMN = "teacher_row"
CACHE_VERSION = 1
META_NAME = "meta.json"


@dataclass(frozen=True)
class CacheSpec:
    """What a cache keeps, and the teacher's shapes.

    Args:
        hidden_layers (`tuple[int, ...]`): teacher hidden states to keep, numbered as `output_hidden_states` (0 = the
            embeddings).
        attention_layers (`tuple[int, ...]`): teacher layers (1-based) whose recorded attention scores to keep.
        num_hidden_layers (`int`): the teacher's depth (`hidden_states` has one more entry).
        hidden_size (`int`), num_heads (`int`), num_labels (`int`): the teacher's widths.
        precision (`str`): how the teacher pass runs (`"no"`, `"bf16"`, `"fp16"`: the mixed precision of training).
    """

    hidden_layers: tuple[int, ...]
    attention_layers: tuple[int, ...]
    num_hidden_layers: int
    hidden_size: int
    num_heads: int
    num_labels: int
    precision: str = "no"

    def bytes_per_row(self, length: int) -> int:
        """Bytes one row of `length` tokens takes on disk."""
        hidden = len(self.hidden_layers) * length * self.hidden_size
        attention = len(self.attention_layers) * self.num_heads * length * length
        return 2 * (hidden + attention) + 4 * self.num_labels


def data_digest(dataset: Dataset) -> tuple[np.ndarray, str]:
    """The rows' lengths (tokens of `input_ids`) and a SHA-256 of their model inputs (`input_ids`, `attention_mask`,
    `token_type_ids`: the ids and every row's length), in row order."""
    columns = [c for c in MODEL_INPUTS if c in dataset.column_names]
    if "input_ids" not in columns:
        raise ValueError(f"Caching teacher outputs needs a tokenized dataset; its columns are {dataset.column_names}")
    table = dataset.with_format("arrow").select_columns(columns)[:]
    digest = hashlib.sha256()
    lengths = None
    for column in columns:
        values = table[column]
        column_lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = column_lengths if lengths is None else lengths
        digest.update(column.encode())
        digest.update(column_lengths.tobytes())
        digest.update(pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    return lengths, digest.hexdigest()


def default_cache_root(dataset: Dataset) -> Path:
    """Next to the dataset's own cache files when it has any, else under the `datasets` cache folder."""
    if dataset.cache_files:
        return Path(dataset.cache_files[0]["filename"]).parent / "bertdistill_teacher_outputs"
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "bertdistill_teacher_outputs"


@dataclass
class CachePlan:
    """Where a cache lives and what it costs, known before any teacher pass."""

    folder: Path
    spec: CacheSpec
    lengths: np.ndarray
    bytes: int

    @property
    def exists(self) -> bool:
        return (self.folder / META_NAME).is_file()

    def refusal(self, max_gb: float) -> str | None:
        """Why the cache may not be written (over `max_gb`, or more than the disk has free), `None` if it fits or
        is on disk already."""
        if self.exists:
            return None
        needed = self.bytes / 2**30
        if needed > max_gb:
            return (
                f"the cache of {len(self.lengths)} rows would take {needed:.2f} GB, over teacher_cache_max_gb "
                f"{max_gb:g} GB (raise it, or cache fewer layers)"
            )
        existing = self.folder
        while not existing.exists():
            existing = existing.parent
        free = shutil.disk_usage(existing).free / 2**30
        if needed > free:
            return f"the cache would take {needed:.2f} GB but {existing} has {free:.2f} GB free"
        return None


def plan_cache(dataset: Dataset, teacher, spec: CacheSpec, cache_root: str | os.PathLike | None = None) -> CachePlan:
    """The cache folder for `dataset` x `teacher` x `spec` under `cache_root` (default: [`default_cache_root`]) and
    its size."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"Caching teacher outputs needs a datasets.Dataset, got {type(dataset).__name__}")
    lengths, data = data_digest(dataset)
    key = hashlib.sha256(
        json.dumps([CACHE_VERSION, data, teacher_digest(teacher), asdict(spec)], sort_keys=True).encode()
    ).hexdigest()[:32]
    root = Path(cache_root) if cache_root is not None else default_cache_root(dataset)
    values, counts = np.unique(lengths, return_counts=True)
    size = int(sum(int(c) * spec.bytes_per_row(int(v)) for v, c in zip(values, counts)))
    return CachePlan(folder=root / key, spec=spec, lengths=lengths, bytes=size)


def _offsets(lengths: np.ndarray, per_row: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(per_row(lengths.astype(np.int64)))])


class TeacherOutputCache:
    """A written cache, memory-mapped for reading. Build one with [`write_cache`]."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta = json.loads((self.folder / META_NAME).read_text())
        if meta["version"] != CACHE_VERSION:
            raise ValueError(f"{self.folder} holds a teacher cache of version {meta['version']}, not {CACHE_VERSION}")
        self.spec = CacheSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["spec"].items()})
        self.lengths = np.load(self.folder / "lengths.npy")
        spec = self.spec
        self.hidden = np.load(self.folder / "hidden.npy", mmap_mode="r") if spec.hidden_layers else None
        self.attention = np.load(self.folder / "attention.npy", mmap_mode="r") if spec.attention_layers else None
        self.logits = np.load(self.folder / "logits.npy", mmap_mode="r")
        self.hidden_offsets = _offsets(self.lengths, lambda n: n * len(spec.hidden_layers) * spec.hidden_size)
        self.attention_offsets = _offsets(self.lengths, lambda n: n * n * len(spec.attention_layers) * spec.num_heads)

    def __len__(self) -> int:
        return len(self.lengths)

    def row_hidden(self, row: int) -> np.ndarray:
        """Row `row`'s kept hidden states, `(layers, L, H)` float16."""
        spec, n = self.spec, int(self.lengths[row])
        flat = self.hidden[self.hidden_offsets[row] : self.hidden_offsets[row + 1]]
        return flat.reshape(len(spec.hidden_layers), n, spec.hidden_size)

    def row_attention(self, row: int) -> np.ndarray:
        """Row `row`'s kept attention scores, `(layers, heads, L, L)` float16."""
        spec, n = self.spec, int(self.lengths[row])
        flat = self.attention[self.attention_offsets[row] : self.attention_offsets[row + 1]]
        return flat.reshape(len(spec.attention_layers), spec.num_heads, n, n)

    def outputs(
        self, rows: torch.Tensor, attention_mask: torch.Tensor, device: torch.device | str = "cpu"
    ) -> SequenceClassifierOutput:
        """The teacher outputs of batch `rows` (their `teacher_row` values), padded as `attention_mask` `(B, P)`
        pads the batch: float32 logits `(B, labels)`, `hidden_states` (tuple of `num_hidden_layers + 1`, `(B, P, H)`
        for kept layers, `None` for the others) and `attentions` (kept layers in layer order, `(B, heads, P, P)`)."""
        spec = self.spec
        rows = rows.tolist()
        batch, width = attention_mask.shape
        spans = _token_spans(attention_mask)
        hidden = None
        if self.hidden is not None:
            hidden = torch.zeros(len(spec.hidden_layers), batch, width, spec.hidden_size)
        attention = (
            torch.zeros(len(spec.attention_layers), batch, spec.num_heads, width, width)
            if self.attention is not None
            else None
        )
        for i, (row, (start, length)) in enumerate(zip(rows, spans)):
            if length != self.lengths[row]:
                raise ValueError(
                    f"Batch row {i} (teacher_row {row}) has {length} tokens but the cache stored {self.lengths[row]}: "
                    "the training set changed after the cache was made"
                )
            end = start + length
            if hidden is not None:
                hidden[:, i, start:end] = torch.from_numpy(np.array(self.row_hidden(row)))
            if attention is not None:
                attention[:, i, :, start:end, start:end] = torch.from_numpy(np.array(self.row_attention(row)))
        hidden_states = None
        if hidden is not None:
            hidden_states = [None] * (spec.num_hidden_layers + 1)
            for k, layer in enumerate(spec.hidden_layers):
                hidden_states[layer] = hidden[k].to(device)
            hidden_states = tuple(hidden_states)
        attentions = tuple(a.to(device) for a in attention) if attention is not None else None
        logits = torch.from_numpy(np.asarray(self.logits[rows], dtype=np.float32)).to(device)
        return SequenceClassifierOutput(logits=logits, hidden_states=hidden_states, attentions=attentions)


def _token_spans(attention_mask: torch.Tensor) -> list[tuple[int, int]]:
    """`(first real position, real tokens)` of each row; padding must be on one side (left or right)."""
    mask = attention_mask.detach().to("cpu", torch.bool)
    spans = []
    for i, row in enumerate(mask):
        positions = row.nonzero().flatten()
        if not len(positions):
            spans.append((0, 0))
            continue
        start, length = int(positions[0]), len(positions)
        if int(positions[-1]) - start + 1 != length:
            raise ValueError(f"Batch row {i} has padding between its tokens: cached teacher outputs need one-sided "
                             "padding")  # fmt: skip
        spans.append((start, length))
    return spans


@torch.no_grad()
def write_cache(
    plan: CachePlan,
    dataset: Dataset,
    teacher_forward: Callable[..., object],
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> TeacherOutputCache:
    """Run the teacher once over `dataset` (rows sorted by length, so batches pad little) and write `plan`'s cache;
    an existing complete cache is opened as it is.

    Args:
        plan (`CachePlan`): from [`plan_cache`] on the same dataset and teacher.
        dataset (`datasets.Dataset`): tokenized rows, in the order `teacher_row` numbers them.
        teacher_forward (`Callable`): the frozen teacher (under training's mixed precision, if any), called with the
            model inputs, `output_hidden_states` and `output_attentions`.
        collate (`Callable`): pads a list of rows into a batch (the trainer's data collator).
        batch_size (`int`, *optional*, defaults to 64): rows per teacher forward.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`): where the teacher runs.
    """
    if plan.exists:
        return TeacherOutputCache(plan.folder)
    spec, lengths = plan.spec, plan.lengths
    columns = [c for c in MODEL_INPUTS if c in dataset.column_names]
    plan.folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = plan.folder.with_name(f"{plan.folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        hidden_offsets = _offsets(lengths, lambda n: n * len(spec.hidden_layers) * spec.hidden_size)
        attention_offsets = _offsets(lengths, lambda n: n * n * len(spec.attention_layers) * spec.num_heads)

        def open_flat(name: str, total: int, dtype=np.float16):
            return np.lib.format.open_memmap(scratch / name, mode="w+", dtype=dtype, shape=(max(int(total), 1),))

        hidden = open_flat("hidden.npy", hidden_offsets[-1]) if spec.hidden_layers else None
        attention = open_flat("attention.npy", attention_offsets[-1]) if spec.attention_layers else None
        logits = np.lib.format.open_memmap(
            scratch / "logits.npy", mode="w+", dtype=np.float32, shape=(len(lengths), spec.num_labels)
        )
        order = np.argsort(lengths, kind="stable")
        inputs_only = dataset.select_columns(columns)
        for begin in range(0, len(order), batch_size):
            chosen = order[begin : begin + batch_size].tolist()
            block = inputs_only[chosen]
            batch = collate([{c: block[c][j] for c in columns} for j in range(len(chosen))])
            batch = {k: v.to(device) for k, v in batch.items() if k in columns}
            out = teacher_forward(
                **batch, output_hidden_states=bool(spec.hidden_layers), output_attentions=bool(spec.attention_layers)
            )
            spans = _token_spans(batch["attention_mask"]) if "attention_mask" in batch else None
            kept_hidden = [out.hidden_states[layer] for layer in spec.hidden_layers]
            kept_attention = list(out.attentions or ()) if spec.attention_layers else []
            if len(kept_attention) != len(spec.attention_layers):
                raise ValueError(
                    f"The teacher returned {len(kept_attention)} attention tensors, not the recorded layers "
                    f"{list(spec.attention_layers)}: it does not record exactly those layers"
                )
            logits[chosen] = out.logits.float().cpu().numpy()
            for j, row in enumerate(chosen):
                start, length = spans[j] if spans else (0, int(lengths[row]))
                if length != lengths[row]:
                    raise ValueError(f"Row {row}: {length} real tokens in the batch, {lengths[row]} in the dataset")
                end = start + length
                if hidden is not None:
                    values = torch.stack([h[j, start:end] for h in kept_hidden]).to("cpu", torch.float16)
                    _check_finite(values, row, "hidden states")
                    hidden[hidden_offsets[row] : hidden_offsets[row + 1]] = values.numpy().reshape(-1)
                if attention is not None:
                    values = torch.stack([a[j, :, start:end, start:end] for a in kept_attention])
                    values = values.to("cpu", torch.float16)
                    _check_finite(values, row, "attention scores")
                    attention[attention_offsets[row] : attention_offsets[row + 1]] = values.numpy().reshape(-1)
        for array in (hidden, attention, logits):
            if array is not None:
                array.flush()
        del hidden, attention, logits
        np.save(scratch / "lengths.npy", lengths.astype(np.int64))
        (scratch / META_NAME).write_text(json.dumps({"version": CACHE_VERSION, "spec": asdict(spec)}, indent=1))
        try:
            scratch.rename(plan.folder)
        except OSError:
            if not plan.exists:  # not another process that finished the same cache first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TeacherOutputCache(plan.folder)


def _check_finite(values: torch.Tensor, row: int, what: str) -> None:
    if not torch.isfinite(values).all():
        raise ValueError(f"Row {row}: the teacher's {what} leave the float16 range; train with the live teacher "
                         "(cache_teacher_outputs=False)")  # fmt: skip
