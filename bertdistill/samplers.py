"""Samplers that group rows by class: class-balanced batches, the sampling correlation congruence (CC, Peng et al.,
arXiv 1904.01802) trains with, so that every batch holds examples of every class and the relations between classes are
in each correlation matrix; and CS-KD's same-class pairs."""

from __future__ import annotations

import math
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


def class_labels(dataset, num_labels: int, what: str) -> list[int]:
    """The class of every training row (its `labels` or `label` column), for a sampler that groups rows by class;
    `what` names the option in the errors."""
    column = next((c for c in ("labels", "label") if c in getattr(dataset, "column_names", ())), None)
    if column is None:
        raise ValueError(f"{what} needs a training set with a 'labels' or 'label' column")
    if num_labels < 2:
        raise ValueError(f"{what} needs a classification task; this student predicts one value (regression)")
    return [int(label) for label in dataset[column]]


class ClassPairSampler(Sampler[int]):
    """Class-wise pairs for CS-KD (Yun et al., arXiv 2003.13964): every chunk of `2 * batch_size` indices is
    `batch_size` anchors followed by one partner per anchor, in the same order, each partner a row of the anchor's
    class. Use it with a `DataLoader` of batch size `2 * batch_size`.

    Each epoch, every row is an anchor once (a fresh permutation); the last chunk is completed with the epoch's first
    anchors, so that every chunk is whole (a process of a distributed launch takes whole chunks). A partner is drawn
    uniformly from the anchor's class.

    Args:
        labels (`Sequence[int]`): the class of every row.
        batch_size (`int`): anchors per batch.
        seed (`int`, *optional*, defaults to 0): epoch `e` draws with `seed + e` (see `set_epoch`), the same on every
            process.
        partner (`str`, *optional*, defaults to `"other"`): `"other"`, a row other than the anchor itself (the
            paper's "another sample of the same class"; a class with a single row pairs it with itself), or `"any"`,
            any row of the class, the anchor included (the authors' `PairBatchSampler`).
    """

    PARTNERS = ("other", "any")

    def __init__(self, labels: Sequence[int], batch_size: int, seed: int = 0, partner: str = "other"):
        if partner not in self.PARTNERS:
            raise ValueError(f"partner must be one of {self.PARTNERS}, got {partner!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.labels = [int(label) for label in labels]
        if not self.labels:
            raise ValueError("Class-wise pairs need a non-empty training set")
        self.batch_size = batch_size
        self.seed = seed
        self.partner = partner
        self.epoch = 0
        self.rows: dict[int, list[int]] = {}
        self.position: list[int] = []  # each row's place among its class's rows
        for i, label in enumerate(self.labels):
            self.position.append(len(self.rows.setdefault(label, [])))
            self.rows[label].append(i)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2 * self.batch_size * math.ceil(len(self.labels) / self.batch_size)

    def _partner(self, anchor: int, generator: torch.Generator) -> int:
        rows = self.rows[self.labels[anchor]]
        if self.partner == "any" or len(rows) == 1:
            return rows[int(torch.randint(len(rows), (1,), generator=generator))]
        # uniform over the class's other rows: draw one of len - 1 places and step over the anchor's own
        k = int(torch.randint(len(rows) - 1, (1,), generator=generator))
        return rows[k + 1 if k >= self.position[anchor] else k]

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        anchors = torch.randperm(len(self.labels), generator=generator).tolist()
        epoch = list(anchors)
        while len(anchors) % self.batch_size:  # whole chunks, even for fewer rows than a batch
            anchors += epoch[: self.batch_size - len(anchors) % self.batch_size]
        order: list[int] = []
        for start in range(0, len(anchors), self.batch_size):
            chunk = anchors[start : start + self.batch_size]
            order.extend(chunk)
            order.extend(self._partner(anchor, generator) for anchor in chunk)
        return iter(order)
