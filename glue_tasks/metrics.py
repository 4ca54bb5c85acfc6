"""GLUE's official metrics, computed offline (scikit-learn, SciPy) under the names of `evaluate`'s glue module."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap, pearsonr, spearmanr
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


def paired_bootstrap(
    task: GlueTask | str,
    predictions_a: np.ndarray,
    predictions_b: np.ndarray,
    references: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """How much model A beats model B on `task`'s main metric, and how sure one can be of it given the size of the
    evaluation set: the difference A - B and its percentile bootstrap interval, resampling rows with replacement
    and scoring both models on the same resampled rows (a paired bootstrap: what the two models get right together
    cancels).

    Args:
        task (`GlueTask` or `str`):
            The task; its `main_metric` is compared.
        predictions_a (`np.ndarray`), predictions_b (`np.ndarray`):
            Class ids (STS-B: scores) of shape `(n,)`, or `(runs, n)` for several runs of each model (e.g. seeds):
            then the difference is that of the means over the runs, and every run is scored on the same resampled
            rows.
        references (`np.ndarray`):
            Gold labels of shape `(n,)`.
        n_resamples (`int`, *optional*, defaults to 2000), confidence (`float`, *optional*, defaults to 0.95),
        seed (`int`, *optional*, defaults to 0):
            Resamples, the interval's confidence level and the random seed (the same seed gives the same interval).

    Returns:
        `dict[str, float]`: `difference` (on all rows), `low` and `high` (the interval's ends).
    """
    task = get_task(task) if isinstance(task, str) else task
    references = np.asarray(references)
    runs_a, runs_b = (np.atleast_2d(np.asarray(p, dtype=np.float64)) for p in (predictions_a, predictions_b))
    for runs in (runs_a, runs_b):
        if runs.ndim != 2 or runs.shape[1] != len(references):
            raise ValueError(
                f"predictions of shape {runs.shape} for {len(references)} references: give class ids (STS-B: "
                "scores) of shape (n,) or (runs, n)"
            )
    if len(runs_a) != len(runs_b):
        raise ValueError(f"{len(runs_a)} runs of model A against {len(runs_b)} of model B: pair every run")

    def difference(rows: np.ndarray) -> float:
        return float(
            np.mean([glue_metrics(task, run[rows], references[rows])[task.main_metric] for run in runs_a])
            - np.mean([glue_metrics(task, run[rows], references[rows])[task.main_metric] for run in runs_b])
        )

    interval = bootstrap(
        (np.arange(len(references)),), difference, n_resamples=n_resamples, vectorized=False,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    return {"difference": difference(np.arange(len(references))), "low": float(interval.low),
            "high": float(interval.high)}  # fmt: skip
