"""What every reckd model returns: its prediction plus the staged taps the losses reach into."""

from __future__ import annotations

from dataclasses import dataclass

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
        """The rows ``rows`` of every tensor (used to slice a cached teacher)."""
        return Outputs(
            self.prediction[rows],
            self.lower[rows],
            self.upper[rows],
            None if self.logits is None else self.logits[rows],
        )

    def to(self, device: torch.device | str) -> "Outputs":
        return Outputs(
            self.prediction.to(device),
            self.lower.to(device),
            self.upper.to(device),
            None if self.logits is None else self.logits.to(device),
        )
