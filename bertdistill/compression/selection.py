"""Picking the model to ship from measured rows (a DynaBERT grid, the stages of a compression pipeline) under
budgets on size and latency."""

from __future__ import annotations


def choose_within_budget(rows: list[dict], metric: str, budgets: dict[str, float | None], describe) -> dict:
    """The row with the best `metric` among those whose every `budgets` key is at most its value (`None`: no budget);
    ties go to the smaller row (the first budget's key).

    Args:
        rows (`list[dict]`): measured rows holding `metric` and every key of `budgets`.
        metric (`str`): key of the metric to maximise.
        budgets (`dict[str, float | None]`): key -> the largest value allowed.
        describe (`callable`): a row -> how to name it in the error.

    Raises:
        `ValueError`: when no row fits, naming the smallest value of every budgeted key that the rows reach.
    """
    limits = {key: limit for key, limit in budgets.items() if limit is not None}
    fits = [row for row in rows if all(row[key] <= limit for key, limit in limits.items())]
    if not fits:
        reachable = "; ".join(
            f"the smallest {key} is {describe(best)}'s {best[key]:.6g}"
            for key, best in ((key, min(rows, key=lambda r, k=key: r[k])) for key in limits)
        )
        wanted = ", ".join(f"{key} <= {limit:.6g}" for key, limit in limits.items())
        raise ValueError(f"Nothing fits the budget ({wanted}): {reachable}")
    size_key = next(iter(budgets))
    return max(fits, key=lambda r: (r[metric], -r[size_key]))


def choose_setting(rows: list[dict], metric: str, max_parameters: int | None = None,
                   max_latency_ms: float | None = None, latency_key: str = "latency_b1_ms") -> dict:  # fmt: skip
    """The grid row with the best `metric` among those within the budgets (parameters and/or latency).

    Args:
        rows (`list[dict]`): grid rows with `metric`, `"parameters"`, `latency_key`, `width_mult` and `depth_mult`.
        metric (`str`): key of the metric to maximise.
        max_parameters (`int`, *optional*), max_latency_ms (`float`, *optional*): the budgets.
        latency_key (`str`, *optional*): which latency the budget is about (`"latency_b1_ms"` or `"latency_b32_ms"`).
    """
    return choose_within_budget(
        rows, metric, {"parameters": max_parameters, latency_key: max_latency_ms},
        lambda row: f"width {row['width_mult']}, depth {row['depth_mult']}",
    )  # fmt: skip
