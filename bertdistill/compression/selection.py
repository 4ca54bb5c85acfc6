"""Picking the sub-network to ship from a measured (width, depth) grid, under a parameter and/or latency budget."""

from __future__ import annotations


def choose_setting(rows: list[dict], metric: str, max_parameters: int | None = None,
                   max_latency_ms: float | None = None, latency_key: str = "latency_b1_ms") -> dict:  # fmt: skip
    """The grid row with the best `metric` among those within the budgets (parameters and/or latency).

    Args:
        rows (`list[dict]`): grid rows with `metric`, `"parameters"` and `latency_key`.
        metric (`str`): key of the metric to maximise.
        max_parameters (`int`, *optional*), max_latency_ms (`float`, *optional*): the budgets.
        latency_key (`str`, *optional*): which latency the budget is about (`"latency_b1_ms"` or `"latency_b32_ms"`).
    """
    fits = [
        row for row in rows
        if (max_parameters is None or row["parameters"] <= max_parameters)
        and (max_latency_ms is None or row[latency_key] <= max_latency_ms)
    ]  # fmt: skip
    if not fits:
        smallest = min(rows, key=lambda r: r["parameters"])
        raise ValueError(
            f"No setting fits the budget (parameters <= {max_parameters}, {latency_key} <= {max_latency_ms}); the "
            f"smallest is width {smallest['width_mult']}, depth {smallest['depth_mult']} with "
            f"{smallest['parameters']} parameters and {smallest[latency_key]:.1f} ms"
        )
    return max(fits, key=lambda r: (r[metric], -r["parameters"]))
