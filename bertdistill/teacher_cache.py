"""Teacher logits computed once and reused every epoch, for losses that read nothing else of the teacher.

A frozen teacher in eval mode gives the same logits for an example in every epoch, so logit-only distillation
(`kd`, TinyBERT's prediction stage) can compute them in one pass over the training set and store them as a
`teacher_logits` column. The column is written by `datasets.Dataset.map` under a fingerprint made of the dataset's
own fingerprint and a digest of the teacher's weights and config: a dataset read from disk keeps the column in a
cache file next to its other cache files and a later run with the same data and teacher reuses it; different data or
a different teacher give a different fingerprint, hence a fresh computation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from transformers import PreTrainedModel

TEACHER_LOGITS_COLUMN = "teacher_logits"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LENGTH_SORT_BLOCKS = 16


def teacher_digest(teacher: PreTrainedModel) -> str:
    """SHA-256 of the teacher's config and every weight, in state-dict order: changes whenever the teacher does."""
    digest = hashlib.sha256(teacher.config.to_json_string(use_diff=False).encode())
    for name, tensor in teacher.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def add_teacher_logits(
    dataset: Dataset,
    teacher: PreTrainedModel,
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    extra_columns: tuple[str, ...] = (),
) -> Dataset:
    """`dataset` with a `teacher_logits` column: the teacher's float32 logits of every row.

    Args:
        dataset (`datasets.Dataset`): tokenized rows (`input_ids`, `attention_mask`, optionally `token_type_ids`).
        teacher (`PreTrainedModel`): the frozen teacher, a `*ForSequenceClassification`; put in eval mode here.
        collate (`Callable`): pads a list of rows into a batch (the trainer's data collator).
        batch_size (`int`, *optional*, defaults to 64): rows per teacher forward. Rows are read in blocks of
            `LENGTH_SORT_BLOCKS` batches, and each block is sorted by length before it is cut into batches, so
            that the one teacher pass pads little whatever order the dataset is in.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`): where the teacher runs.
        extra_columns (`tuple[str, ...]`, *optional*): more input columns the teacher reads (a multi-teacher
            ensemble's own-token encodings, `bertdistill.teacher_ensemble`).
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"Caching teacher logits needs a datasets.Dataset, got {type(dataset).__name__}")
    columns = [c for c in (*MODEL_INPUTS, *extra_columns) if c in dataset.column_names]
    if "input_ids" not in columns:
        raise ValueError(f"Caching teacher logits needs a tokenized dataset; its columns are {dataset.column_names}")
    if TEACHER_LOGITS_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(TEACHER_LOGITS_COLUMN)
    teacher.eval()
    fingerprint = Hasher.hash([dataset._fingerprint, teacher_digest(teacher), columns, TEACHER_LOGITS_COLUMN])

    def logits_of(block: dict[str, list]) -> dict[str, list]:
        rows = [{c: block[c][i] for c in columns} for i in range(len(block["input_ids"]))]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # the student's length: a proxy
        logits = [None] * len(rows)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            inputs = {k: v.to(device) for k, v in collate([rows[i] for i in chosen]).items() if k in columns}
            for i, row_logits in zip(chosen, teacher(**inputs).logits.float().cpu().numpy()):
                logits[i] = row_logits
        return {TEACHER_LOGITS_COLUMN: logits}

    return dataset.map(
        logits_of,
        batched=True,
        batch_size=batch_size * LENGTH_SORT_BLOCKS,
        new_fingerprint=fingerprint,
        desc="Teacher logits (cached)",
    )
