"""Finished results of the real-data checks, kept as one small JSON file per (task, run, seed) so that they outlive
the checkpoints (which are large and not committed), a later session resumes where an earlier one stopped, and a
report can be rebuilt from the files alone."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path


class ResultStore:
    """Result files under `root/<task>/<run>-seed<seed>.json`. A finished result is never overwritten.

    Args:
        root (`str` or `Path`): folder of the result files (committed with the report that uses them).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, task: str, run: str, seed: str | int) -> Path:
        return self.root / task / f"{run}-seed{seed}.json"

    def has(self, task: str, run: str, seed: str | int) -> bool:
        return self.path(task, run, seed).is_file()

    def save(self, task: str, run: str, seed: str | int, record: dict) -> Path:
        """Write a finished run's record; refuses to replace one that exists."""
        path = self.path(task, run, seed)
        if path.exists():
            raise FileExistsError(f"{path} holds a finished result; delete it to record the run again")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"task": task, "run": run, "seed": str(seed), **record}, indent=2) + "\n")
        return path

    def tasks(self) -> list[str]:
        """Names of the tasks with at least one result file, sorted."""
        return sorted({path.parent.name for path in self.root.glob("*/*-seed*.json")})

    def load(self, task: str) -> dict[str, dict[str, dict]]:
        """`{run: {seed: record}}` of every result file of `task`."""
        runs: dict[str, dict[str, dict]] = {}
        for path in sorted((self.root / task).glob("*-seed*.json")):
            record = json.loads(path.read_text())
            runs.setdefault(record["run"], {})[record["seed"]] = record
        return runs


@dataclass
class RunSummary:
    """A run's scores over its seeds, and how it compares with its baseline over the seeds both have.

    `beats_baseline` is `None` without a baseline or without a seed in common; `paired_*` are the means over the
    common seeds only (the comparison the verdict uses)."""

    run: str
    seeds: list[str]
    scores: list[float]
    baseline: str | None = None
    paired_seeds: list[str] | None = None
    paired_score: float | None = None
    paired_baseline_score: float | None = None
    beats_baseline: bool | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; `None` for a single seed."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else None


def summarise(scores: dict[str, dict[str, float]], baselines: dict[str, str | None]) -> dict[str, RunSummary]:
    """Mean over seeds per run and the paired comparison with each run's baseline.

    Args:
        scores (`dict[str, dict[str, float]]`): `{run: {seed: score}}`, higher is better.
        baselines (`dict[str, str | None]`): the run each run has to beat (missing or `None`: none).

    Returns:
        `dict[str, RunSummary]` in the order of `scores`.
    """
    summaries = {}
    for run, by_seed in scores.items():
        seeds = sorted(by_seed, key=_seed_order)
        summary = RunSummary(run, seeds, [by_seed[s] for s in seeds], baselines.get(run))
        base = scores.get(summary.baseline) if summary.baseline else None
        common = [s for s in seeds if base is not None and s in base]
        if common:
            summary.paired_seeds = common
            summary.paired_score = statistics.fmean(by_seed[s] for s in common)
            summary.paired_baseline_score = statistics.fmean(base[s] for s in common)
            summary.beats_baseline = summary.paired_score > summary.paired_baseline_score
        summaries[run] = summary
    return summaries


def _seed_order(seed: str):
    return (0, int(seed)) if seed.isdigit() else (1, seed)
