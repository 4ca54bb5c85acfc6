"""GLUE tasks for bertdistill: the task registry, loading (classic TSV folder or the Hub) and the official metrics."""

from .loading import GLUE_DIR_ENV, check_glue_dir, load_glue_split, read_glue_tsv, resolve_glue_dir, tsv_path
from .metrics import glue_metrics, paired_bootstrap
from .tasks import GLUE_TASKS, HUB_DATASET, GlueTask, TsvLayout, get_task, register_task

__all__ = [
    "GLUE_DIR_ENV",
    "GLUE_TASKS",
    "HUB_DATASET",
    "GlueTask",
    "TsvLayout",
    "check_glue_dir",
    "get_task",
    "glue_metrics",
    "load_glue_split",
    "paired_bootstrap",
    "read_glue_tsv",
    "register_task",
    "resolve_glue_dir",
    "tsv_path",
]
