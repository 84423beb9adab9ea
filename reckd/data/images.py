"""The digits image task's data: scikit-learn's ``load_digits`` as tensors (shipped with the package,
nothing downloads), downstream task specs (a subset of the digits, a few labelled images of each)
and stratified splits. Batches come from a :class:`~reckd.data.source.TensorSource` over the images.

Example::

    images, digits = load_digits_tensors()
    task = Task.parse("0-4:10")
    source = TensorSource(images, task.relabel(digits))   # labels 0..4, -1 outside the task
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reckd.errors import OptionError


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8×8 digit images scaled to [0, 1], ``[N, 1, 8, 8]``, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(digits.target, dtype=torch.long)


def stratified_take(labels: np.ndarray, rows: np.ndarray, fraction_or_count: float, rng: np.random.Generator,
                    min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` per class: a fraction (float < 1) or a count (≥ 1) of each class, at least
    ``min_count``; returns (taken, rest)."""
    taken = []
    for c in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == c])
        n = int(fraction_or_count) if fraction_or_count >= 1 else round(fraction_or_count * len(members))
        taken.append(members[: min(len(members) - 1, max(min_count, n))])
    taken = np.sort(np.concatenate(taken))
    return taken, np.setdiff1d(rows, taken)


@dataclass(frozen=True)
class Task:
    """A downstream task: the digits ``classes`` (relabelled 0..n−1), ``labels_per_class``
    labelled images of each for the student (training + validation)."""

    classes: tuple[int, ...]
    labels_per_class: int

    @classmethod
    def parse(cls, spec: str) -> "Task":
        """``"0-4:10"`` (classes 0..4, 10 labels each) or ``"1,3,5,7:20"``."""
        try:
            classes_text, n_text = spec.split(":")
            if "-" in classes_text:
                lo, hi = (int(v) for v in classes_text.split("-"))
                classes = tuple(range(lo, hi + 1))
            else:
                classes = tuple(int(v) for v in classes_text.split(","))
            task = cls(classes, int(n_text))
        except ValueError:
            raise OptionError(f"--task {spec!r}: expected CLASSES:LABELS_PER_CLASS, e.g. 0-4:10 or 1,3,5:20") from None
        if len(set(classes)) < 2 or not all(0 <= c <= 9 for c in classes) or task.labels_per_class < 2:
            raise OptionError(f"--task {spec!r}: expected ≥ 2 distinct digits in 0..9 and ≥ 2 labels per class")
        return task

    @property
    def name(self) -> str:
        c = self.classes
        text = f"{c[0]}-{c[-1]}" if c == tuple(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
        return f"{text}:{self.labels_per_class}"

    def relabel(self, digits: Tensor) -> Tensor:
        """Digit labels in the task's label space: ``classes[i]`` → ``i``, digits outside the task → −1."""
        remap = torch.full((10,), -1, dtype=torch.long, device=digits.device)
        remap[list(self.classes)] = torch.arange(len(self.classes), device=digits.device)
        return remap[digits]

    def rows(self, digits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Those of ``rows`` whose digit is one of the task's classes."""
        return rows[np.isin(digits[rows], self.classes)]
