"""Class-balanced batches: the sampling correlation congruence (CC, Peng et al., arXiv 1904.01802) trains with, so
that every batch holds examples of every class and the relations between classes are in each correlation matrix."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler[int]):
    """Indices whose consecutive chunks of `batch_size` hold every class equally (as near as `batch_size` allows:
    the remainder goes to classes in turn), for a `DataLoader` with that batch size.

    Each epoch shuffles every class's rows and deals them out batch by batch; a class that runs out starts its
    (reshuffled) rows again, so small classes are over-sampled. An epoch has `len(labels)` indices.

    Args:
        labels (`Sequence[int]`): the class of every row.
        batch_size (`int`): the per-device batch size (at least the number of classes).
        seed (`int`, *optional*, defaults to 0): the shuffling seed; epoch `e` uses `seed + e` (see `set_epoch`).
    """

    def __init__(self, labels: Sequence[int], batch_size: int, seed: int = 0):
        self.labels = [int(label) for label in labels]
        self.classes = sorted(set(self.labels))
        if len(self.classes) < 2:
            raise ValueError(f"Class-balanced batches need at least 2 classes, the labels have {self.classes}")
        if batch_size < len(self.classes):
            raise ValueError(
                f"Class-balanced batches of {batch_size} rows cannot hold all {len(self.classes)} classes; "
                "raise the per-device batch size"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        rows = {c: [i for i, label in enumerate(self.labels) if label == c] for c in self.classes}
        queues: dict[int, list[int]] = {c: [] for c in self.classes}

        def take(c: int) -> int:
            if not queues[c]:
                queues[c] = [rows[c][k] for k in torch.randperm(len(rows[c]), generator=generator).tolist()]
            return queues[c].pop()

        order: list[int] = []
        turn = 0
        while len(order) < len(self.labels):
            batch = []
            for slot in range(self.batch_size):
                batch.append(take(self.classes[(turn + slot) % len(self.classes)]))
            turn += self.batch_size % len(self.classes)
            shuffled = torch.randperm(len(batch), generator=generator).tolist()
            order.extend(batch[k] for k in shuffled)
        return iter(order[: len(self.labels)])
