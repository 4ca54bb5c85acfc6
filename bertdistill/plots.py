"""Figures for reports: the DynaBERT grid heatmap, metric against size and speed for the GLUE suite, the early-exit
curve (metric against layers used and latency), and differences with their intervals (a forest plot)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def grid_heatmap(rows: list[dict], metric: str, path: str | os.PathLike, title: str = "") -> None:
    """Heatmap of `metric` over (width, depth), each cell annotated with the metric, parameters (M) and CPU latency
    (ms) at batch 1 and 32. `rows` hold `width_mult`, `depth_mult`, `metric`, `parameters`, `latency_b1_ms` and
    `latency_b32_ms`."""
    widths = sorted({r["width_mult"] for r in rows})
    depths = sorted({r["depth_mult"] for r in rows})
    cell = {(r["width_mult"], r["depth_mult"]): r for r in rows}
    values = [[cell[(w, d)][metric] if (w, d) in cell else float("nan") for w in widths] for d in depths]
    fig, ax = plt.subplots(figsize=(2.0 * len(widths) + 1.5, 1.5 * len(depths) + 1.2))
    image = ax.imshow(values, cmap="viridis", origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_xticks(range(len(widths)), [f"{w:g}" for w in widths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("width multiplier")
    ax.set_ylabel("depth multiplier")
    low, high = min(min(v) for v in values), max(max(v) for v in values)
    for y, d in enumerate(depths):
        for x, w in enumerate(widths):
            if (w, d) not in cell:
                continue
            row = cell[(w, d)]
            dark = row[metric] < (low + high) / 2
            label = (f"{row[metric]:.3f}\n{row['parameters'] / 1e6:.1f}M params\nb1 {row['latency_b1_ms']:.1f} ms\n"
                     f"b32 {row['latency_b32_ms']:.0f} ms")  # fmt: skip
            ax.text(x, y, label,
                    ha="center", va="center", fontsize=8, color="white" if dark else "black")  # fmt: skip
    ax.set_title(title)
    _save(fig, path)


def _style_axis(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")  # a fixed corner hid points of some curves


def _save(fig, path: str | os.PathLike, title: str = "") -> None:
    """Title the figure (when given), lay it out, write it at 120 dpi and free it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both counts (lower cost, higher metric), by increasing cost.
    `points` are `(cost, metric)` pairs."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(
    rows: list[dict],
    path: str | os.PathLike,
    title: str = "",
    metric_key: str = "average",
    metric_label: str = "average dev score (x 100)",
    latency_key: str = "latency_b32_ms",
) -> None:
    """A metric against CPU latency and against size on disk, one labelled point per row, the Pareto front of each
    panel drawn as a line. `rows` hold `run`, `metric_key`, `latency_key` (`latency_b1_ms` or `latency_b32_ms`) and
    `size_mb`."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    batch = latency_key.removeprefix("latency_b").removesuffix("_ms")
    for ax, key, label in ((axes[0], latency_key, f"CPU latency at batch {batch} (ms)"),
                           (axes[1], "size_mb", "size on disk (MB)")):  # fmt: skip
        points = [(r[key], r[metric_key]) for r in rows]
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "-", color="tab:red", alpha=0.6,
                label="Pareto front")  # fmt: skip
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=3)
        for (x, y), row in zip(points, rows):
            ax.annotate(row["run"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        _style_axis(ax, label, metric_label)
    _save(fig, path, title)


def early_exit_plot(rows: list[dict], path: str | os.PathLike, metric_label: str, title: str = "") -> None:
    """An early-exit sweep (rows of `bertdistill.early_exit.early_exit_sweep`): the metric against the mean layers
    used and against batch-1 latency, the thresholds as one line, the fixed-depth networks of each exit as another,
    and rows of kind `"trained_alone"` (networks of those depths trained on their own, labelled by `setting`) as a
    third."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "mean_layers", "mean layers used"),
                           (axes[1], "latency_b1_ms", "CPU latency at batch 1 (ms per example)")):  # fmt: skip
        for kind, style, name in (("early_exit", "o-", "early exit"), ("fixed_depth", "s--", "fixed depth"),
                                  ("trained_alone", "^:", "trained alone")):  # fmt: skip
            chosen = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r[key])
            if not chosen:
                continue
            ax.plot([r[key] for r in chosen], [100 * r["score"] for r in chosen], style, label=name)
            for r in chosen:
                text = f"{r['threshold']:g}" if kind == "early_exit" else r["setting"].split(" (")[0]
                ax.annotate(text, (r[key], 100 * r["score"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        _style_axis(ax, label, metric_label)
    _save(fig, path, title)


def interval_plot(rows: list[dict], path: str | os.PathLike, xlabel: str, title: str = "") -> None:
    """A forest plot: per `label` (one line each, top to bottom in first-seen order), one marker per `series` at
    `difference` with a bar from `low` to `high`, and a vertical line at 0; a filled marker when the interval
    excludes 0, an open one when it spans it. `rows` hold `label`, `series`, `difference`, `low` and `high` (all in
    the unit of `xlabel`)."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    series = list(dict.fromkeys(r["series"] for r in rows))
    step = 0.7 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.6))
    ax.axvline(0, color="grey", linewidth=1)
    for k, name in enumerate(series):
        color = f"C{k}"
        chosen = [r for r in rows if r["series"] == name]
        ys = [labels.index(r["label"]) + (k - (len(series) - 1) / 2) * step for r in chosen]
        xs = [r["difference"] for r in chosen]
        errors = [[r["difference"] - r["low"] for r in chosen], [r["high"] - r["difference"] for r in chosen]]
        ax.errorbar(xs, ys, xerr=errors, fmt="none", ecolor=color, elinewidth=1.5, capsize=2)
        clear = [r["low"] > 0 or r["high"] < 0 for r in chosen]
        ax.scatter(xs, ys, color=[color if c else "white" for c in clear], edgecolors=color, zorder=3)
        ax.scatter([], [], color=color, label=name)  # the legend's marker: filled whatever the first point is
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="best", fontsize=8)
    _save(fig, path, title)
