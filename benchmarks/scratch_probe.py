"""Probe the scratch student (`none`) beyond `reckd tune`'s grid: each setting trains one `none` student
per genre of the README's split (seed 0, the distill defaults otherwise: 60 epochs, patience 5, batch
≤ 1024 with at least 16 steps per epoch) and prints the macro-average validation RMSE per genre class —
what chooses — beside the test RMSE, which is only reported. It asks whether any lever closes the gap to
genre-only SVD (validation 0.9239 dense, 0.9652 sparse; README "Classical reference rows").

    python benchmarks/scratch_probe.py                                       # the probes of the README
    python benchmarks/scratch_probe.py '[{"weight_decay": 0.01, "arch": "deepfm"}]'

A setting's keys: ``weight_decay``, ``lr``, ``batch`` (the largest batch), ``patience``, ``embedding_dim``,
``dropout``, ``input_dropout``, ``arch``, ``hidden`` (the MLP's widths), ``embedding_optimizer`` (``adam`` or ``adagrad``) and
``lookup_l2`` — Funk-SVD's per-rating regularisation, λ · mean over the batch of ‖e_u‖² + ‖e_i‖² + b_u² + b_i²
(frequent users and items are regularised in proportion to their ratings, unlike weight decay, which
shrinks every row at every step). reckd has no such option; this script adds it to probe it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from reckd.losses import Dims, HeadSpec, get, make_config
from reckd.models.ranker import Ranker, RankerConfig
from reckd.train.loop import TrainConfig, fit, predict_rows, rmse
from reckd.train.teacher import ranker_features

from readme_split import readme_split

PROBES = [
    {"weight_decay": 0.01},  # the tuned `none` of dense genres (README "Tuned students"), for reference
    *({"lookup_l2": v} for v in (0.01, 0.03, 0.1, 0.3)),
    {"weight_decay": 0.01, "embedding_dim": 16}, {"weight_decay": 0.01, "embedding_dim": 32},
    {"weight_decay": 0.03, "embedding_dim": 32},
    {"weight_decay": 0.01, "batch": 256}, {"weight_decay": 0.01, "lr": 1e-3}, {"weight_decay": 0.01, "patience": 12},
    {"weight_decay": 0.01, "dropout": 0.3}, {"weight_decay": 0.003, "input_dropout": 0.5},
    {"weight_decay": 0.01, "embedding_optimizer": "adagrad", "lr": 0.03},
    {"weight_decay": 0.01, "arch": "deepfm"}, {"weight_decay": 0.01, "arch": "dcn"},
]


class LookupL2(Ranker):
    """The student ranker, keeping λ · the batch's mean squared norm of its user and item rows (and biases)."""

    lookup_l2 = 0.0

    def lower(self, kjt):
        pooled = self.ebc(kjt)
        norm = (pooled["user"] ** 2).sum(1) + (pooled["item"] ** 2).sum(1)
        if self.bias_ebc is not None:
            norm = norm + (self.bias_ebc(kjt).values() ** 2).sum(1)
        self.penalty = self.lookup_l2 * norm.mean()
        return super().lower(kjt)


def probe(data, genre: str, setting: dict) -> tuple[float, float]:
    """(best validation RMSE, test RMSE at that epoch) of one `none` student on ``genre``."""
    train_rows, val_rows, test_rows = (data.rows(s, genre) for s in ("train", "val", "test"))
    batch = max(64, min(setting.get("batch", 1024), train_rows.numel() // 16))
    config = TrainConfig(epochs=60, batch_size=batch, lr=setting.get("lr", 3e-3), patience=setting.get("patience", 5),
                         weight_decay=setting.get("weight_decay", 0.0), seed=0)
    torch.manual_seed(0)
    sizes = {k: setting[k] for k in ("embedding_dim", "dropout", "input_dropout", "arch", "hidden") if k in setting}
    # the student of the README's probe table: embedding 8, MLP 32-16 + bias (RankerConfig.student() until 9043cc6)
    small = RankerConfig(embedding_dim=8, hidden=(32, 16), bias=True)
    model = LookupL2(dataclasses.replace(small, **sizes), ranker_features(data), data.levels)
    model.lookup_l2 = setting.get("lookup_l2", 0.0)
    scratch = get("none")(make_config("none"), Dims(*model.dims), Dims(*model.dims), HeadSpec("rating", data.levels))
    if model.lookup_l2:
        task = scratch.forward
        scratch.forward = lambda student, teacher, labels: {**task(student, teacher, labels), "l2": model.penalty}
    result = fit(model, scratch, data, train_rows, val_rows, config,
                 embedding_optimizer=setting.get("embedding_optimizer", "adam"))
    return result.best_val_rmse, rmse(predict_rows(model, scratch, data, test_rows), data.rating[test_rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="?", help="a JSON list of settings (default: the README's probes)")
    parser.add_argument("--root", default="runs/ml-100k", help="where the README's split is (made if missing)")
    args = parser.parse_args()
    settings = json.loads(args.settings) if args.settings else PROBES
    data = readme_split(Path(args.root))
    classes = {genre: info["class"] for genre, info in data.manifest["genres"].items()}
    print("| setting | val dense | val sparse | test dense | test sparse |\n|---|---:|---:|---:|---:|")
    for setting in settings:
        found = {genre: probe(data, genre, setting) for genre in classes}
        macro = {(c, k): statistics.fmean(found[g][k] for g in classes if classes[g] == c)
                 for c in ("dense", "sparse") for k in (0, 1)}
        print(f"| {json.dumps(setting)} | {macro['dense', 0]:.4f} | {macro['sparse', 0]:.4f} | "
              f"{macro['dense', 1]:.4f} | {macro['sparse', 1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
