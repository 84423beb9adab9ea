"""The contract between models and losses, owned by the models: what a forward pass returns
(``Outputs``), how wide its taps are (``Dims``) and what its head predicts (``HeadSpec``).
Every model exposes ``dims`` and ``head_spec`` and returns ``Outputs``; the losses read only these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor


@dataclass
class Outputs:
    """One model's forward pass, with the taps the losses reach into (METHODS.md notation).

    ``prediction``: ``[B]`` rating (rating heads; the expected rating for a rating-distribution head)
    or ``[B]`` argmax class (class heads). ``logits``: ``[B, K]`` class logits or rating-level logits,
    ``None`` for a scalar rating head. ``lower`` / ``upper``: ``s_l`` / ``s_h`` (or ``t_l`` / ``t_h``).
    """

    prediction: Tensor
    lower: Tensor
    upper: Tensor
    logits: Tensor | None = None

    def index(self, rows: Tensor) -> "Outputs":
        """The rows ``rows`` of every tensor (used to slice a cached teacher), as float32: a cache may
        hold its states in half precision."""
        return Outputs(
            self.prediction[rows].float(),
            self.lower[rows].float(),
            self.upper[rows].float(),
            None if self.logits is None else self.logits[rows].float(),
        )

    def to(self, device: torch.device | str) -> "Outputs":
        return Outputs(
            self.prediction.to(device),
            self.lower.to(device),
            self.upper.to(device),
            None if self.logits is None else self.logits.to(device),
        )

    @classmethod
    def cat(cls, parts: list["Outputs"]) -> "Outputs":
        """The outputs of consecutive chunks of rows joined into one."""
        def join(name: str) -> Tensor | None:
            return None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])

        return cls(join("prediction"), join("lower"), join("upper"), join("logits"))


class Dims(NamedTuple):
    """Widths of a model's taps: ``lower`` = width of s_l / t_l, ``upper`` = width of s_h / t_h.
    A tuple, so ``Dims(*model.dims)`` and ``lower, upper = model.dims`` both work."""

    lower: int
    upper: int


@dataclass(frozen=True)
class HeadSpec:
    """The task's head. ``kind='rating'``: ``levels`` are the rating values c_k (e.g. 1..5);
    ``kind='class'``: ``num_classes`` classes."""

    kind: Literal["rating", "class"]
    levels: tuple[float, ...] = ()
    num_classes: int = 0

    @property
    def k(self) -> int:
        return len(self.levels) if self.kind == "rating" else self.num_classes
