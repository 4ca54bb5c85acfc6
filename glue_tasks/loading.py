"""Load a GLUE split as a `datasets.Dataset` with the Hub's columns, from a classic TSV folder or from the Hub."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import datasets

from .tasks import HUB_DATASET, GlueTask, get_task

logger = logging.getLogger(__name__)

GLUE_DIR_ENV = "GLUE_DIR"


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """`glue_dir` if given, else the `GLUE_DIR` environment variable, else `None` (load from the Hub)."""
    glue_dir = glue_dir or os.environ.get(GLUE_DIR_ENV) or None
    return Path(glue_dir) if glue_dir else None


def tsv_path(task: GlueTask | str, split: str, glue_dir: str | os.PathLike) -> Path:
    """Path of one split's TSV file; raises `FileNotFoundError` naming the file and the folder layout expected."""
    task = get_task(task) if isinstance(task, str) else task
    if split not in task.tsv.files:
        raise ValueError(f"{task.name} has no split {split!r}; valid splits: {', '.join(task.tsv.files)}")
    path = Path(glue_dir) / task.tsv.folder / task.tsv.files[split]
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE file for {task.name} {split} not found: {path}. --glue_dir must hold the classic GLUE layout "
            f"({task.tsv.folder}/{task.tsv.files[split]}); drop --glue_dir (or, where a script gives it a default, "
            f'pass --glue_dir "") and unset {GLUE_DIR_ENV} to load {HUB_DATASET} from the Hugging Face Hub instead.'
        )
    return path


def read_glue_tsv(task: GlueTask | str, split: str, glue_dir: str | os.PathLike) -> datasets.Dataset:
    """Read one split of the classic GLUE TSV layout into the Hub's column names and label encoding.

    Quoting is off (sentences contain unbalanced `"`), the MRPC header's byte-order mark is dropped, and CoLA is read
    by position since it has no header. Rows with too few fields (a handful in the original QQP dump) are skipped and
    counted in a warning.
    """
    task = get_task(task) if isinstance(task, str) else task
    path = tsv_path(task, split, glue_dir)
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if task.tsv.has_header:
        header, rows = rows[0], rows[1:]
        missing = [name for name in task.tsv.columns.values() if name not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks the column(s) {missing} of the GLUE {task.name} layout")
        positions = {col: header.index(name) for col, name in task.tsv.columns.items()}
    else:
        positions = dict(task.tsv.columns)

    needed = max(positions.values()) + 1
    data: dict[str, list] = {col: [] for col in (*task.text_columns, "label", "idx")}
    skipped = 0
    for row in rows:
        if len(row) < needed:
            skipped += 1
            continue
        for col in task.text_columns:
            data[col].append(row[positions[col]])
        data["label"].append(task.label_from_tsv(row[positions["label"]]))
        data["idx"].append(int(row[positions["idx"]]) if "idx" in positions else len(data["idx"]))
    if skipped:
        logger.warning("%s: skipped %d malformed row(s) with fewer than %d fields", path, skipped, needed)

    label_feature = (
        datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.label_list))
    )
    features = datasets.Features(
        {
            **{col: datasets.Value("string") for col in task.text_columns},
            "label": label_feature,
            "idx": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(data, features=features)


def load_glue_split(task: GlueTask | str, split: str, glue_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """One split of a GLUE task: from `glue_dir` (or `$GLUE_DIR`) when set, else `nyu-mll/glue` on the Hub."""
    task = get_task(task) if isinstance(task, str) else task
    local = resolve_glue_dir(glue_dir)
    if local is not None:
        return read_glue_tsv(task, split, local)
    return datasets.load_dataset(HUB_DATASET, task.name, split=split)


def check_glue_dir(task: GlueTask | str, glue_dir: str | os.PathLike | None, splits: tuple[str, ...]) -> None:
    """Fail early, before any model is loaded, when a local GLUE folder lacks one of the files a run needs."""
    task = get_task(task) if isinstance(task, str) else task
    local = resolve_glue_dir(glue_dir)
    if local is None:
        return
    if not local.is_dir():
        raise FileNotFoundError(f"GLUE directory not found: {local} (from --glue_dir or ${GLUE_DIR_ENV})")
    for split in splits:
        tsv_path(task, split, local)
