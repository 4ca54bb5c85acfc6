"""GLUE's official metrics, computed offline (scikit-learn, SciPy) under the names of `evaluate`'s glue module."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import GlueTask, get_task


def glue_metrics(task: GlueTask | str, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Official dev-set metrics of `task`.

    Args:
        task (`GlueTask` or `str`):
            The task.
        predictions (`np.ndarray`):
            Model outputs: logits of shape `(n, num_labels)`, class ids of shape `(n,)`, or for STS-B scores of shape
            `(n,)` or `(n, 1)`.
        references (`np.ndarray`):
            Gold labels of shape `(n,)`.

    Returns:
        `dict[str, float]`: e.g. `{"f1": ..., "accuracy": ...}` for MRPC; `{"pearson": ..., "spearmanr": ...}`
        for STS-B; plus `combined_score` (their mean) when a task has two metrics, as `run_glue.py` reports.
    """
    task = get_task(task) if isinstance(task, str) else task
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if task.is_regression:
        predictions = predictions.reshape(-1).astype(np.float64)
        references = references.reshape(-1).astype(np.float64)
    elif predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")

    computed = {
        "accuracy": lambda: accuracy_score(references, predictions),
        "f1": lambda: f1_score(references, predictions),
        "matthews_correlation": lambda: matthews_corrcoef(references, predictions),
        "pearson": lambda: pearsonr(predictions, references)[0],
        "spearmanr": lambda: spearmanr(predictions, references)[0],
    }
    result = {name: float(computed[name]()) for name in task.metrics}
    if len(result) > 1:
        result["combined_score"] = float(np.mean(list(result.values())))
    return result
