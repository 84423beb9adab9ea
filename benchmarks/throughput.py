"""Student training throughput with cached teacher outputs, against a plain-PyTorch reference.

Both loops train the same student (``RankerConfig.student()``: embeddings, the ``dcn`` cross net — or, with
``--arch mlp``, the ``mlp`` interaction — the MLP and user/item bias terms, the same sparse features) with
``kd`` on the same training ratings at the same batch size, in this process, one after the other:

- reckd: ``reckd.train.loop.fit`` — torchrec ``EmbeddingBagCollection`` over a ``KeyedJaggedTensor``
  built per batch, the ``kd`` loss object reading the teacher-output cache, validation each epoch.
- reference: ``nn.EmbeddingBag`` tables fed from pre-gathered index tensors (the genre bag padded to
  the longest, weighted 1/length, so no step waits for the device), DCN-v2's low-rank cross layers
  written out (x ← x₀ ⊙ (W(V x) + b) + x, as torchrec's ``LowRankCrossNet``), the same MLP and
  ``0.9·MSE(ŷ, y) + MSE(ŷ, ŷ_T)``, Adam (fused on CUDA, as reckd's), no validation.

    python benchmarks/throughput.py runs/ml-100k/split --teacher runs/ml-100k/teacher-mix          # the dcn student
    python benchmarks/throughput.py --arch mlp                                                  # the mlp one
    python benchmarks/throughput.py --device cuda --batch 4096,65536 --workers 1   # on a GPU

Each loop is measured in one process (all cores as torch threads) and as ``--workers`` processes
training at once with one thread each, as ``reckd distill --workers`` does; the latter reports the
summed ratings/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reckd.data.split import load_split
from reckd.losses import Dims, HeadSpec, get, make_config
from reckd.models.ranker import Ranker, RankerConfig
from reckd.train.device import resolve_device
from reckd.train.loop import TeacherView, TrainConfig, fit
from reckd.train.teacher import cached_teacher_outputs, load_teacher, ranker_features, teacher_ref

ARCHS = ("dcn", "mlp")  # the interactions the reference below is written for


class CrossNet(nn.Module):
    """DCN-v2's low-rank cross layers: x_{l+1} = x_0 ⊙ (W_l V_l x_l + b_l) + x_l."""

    def __init__(self, width: int, layers: int, rank: int) -> None:
        super().__init__()
        self.down = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(layers))
        self.up = nn.ModuleList(nn.Linear(rank, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for down, up in zip(self.down, self.up):
            x = x0 * up(down(x)) + x
        return x


class Reference(nn.Module):
    """The student written directly in PyTorch: one EmbeddingBag (mean) per feature, the interaction
    (``dcn``: the cross layers over the concatenated embeddings, as ``Ranker``'s rank d·n/4; ``mlp``: the
    user ⊙ item product appended), the MLP, and user and item biases (``nn.Embedding`` of width 1) added
    to its output."""

    def __init__(self, features, config: RankerConfig) -> None:
        super().__init__()
        dim, hidden, n = config.embedding_dim, config.hidden, len(features)
        self.tables = nn.ModuleList(nn.EmbeddingBag(card, dim, mode="sum") for _, card in features)
        cards = dict(features)
        self.user_bias, self.item_bias = nn.Embedding(cards["user"], 1), nn.Embedding(cards["item"], 1)
        self.cross = CrossNet(dim * n, config.cross_layers, max(1, dim * n // 4)) if config.arch == "dcn" else None
        sizes = [dim * (n if self.cross is not None else n + 1), *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden[-1], 1))

    def forward(self, single: list[torch.Tensor], bag: torch.Tensor, bag_weight: torch.Tensor,
                bag_index: int) -> torch.Tensor:
        pooled = []
        k = 0
        for i, table in enumerate(self.tables):
            if i == bag_index:
                pooled.append(table(bag, per_sample_weights=bag_weight))
            else:
                pooled.append(table(single[k].unsqueeze(1)))
                k += 1
        if self.cross is not None:
            x = self.cross(torch.cat(pooled, dim=1))
        else:
            x = torch.cat(pooled + [pooled[0] * pooled[1]], dim=1)
        user, item = single[0], single[1]  # the first two features are user and item
        return (self.mlp(x) + self.user_bias(user) + self.item_bias(item)).squeeze(1)


def reckd_rate(data, teacher_dir: Path, rows: torch.Tensor, batch: int, epochs: int, student: RankerConfig) -> float:
    teacher = load_teacher(teacher_dir, data.rating.device)
    cache = cached_teacher_outputs(teacher, data, teacher_ref(teacher_dir, data), states=False)
    torch.manual_seed(0)
    model = Ranker(student, ranker_features(data), data.levels, device=data.rating.device)
    method = get("kd")(make_config("kd"), Dims(*model.dims), Dims(*teacher.dims), HeadSpec("rating", data.levels))
    val = data.rows("val")[:2000]
    config = TrainConfig(epochs=epochs, batch_size=batch, patience=epochs + 1)
    start = time.perf_counter()
    fit(model, method, data, rows, val, config, TeacherView(teacher, cache))
    _wait(data)
    return epochs * rows.numel() / (time.perf_counter() - start)


def _wait(data) -> None:
    if data.rating.device.type == "cuda":
        torch.cuda.synchronize(data.rating.device)


def reference_rate(data, teacher_dir: Path, rows: torch.Tensor, batch: int, epochs: int,
                   student: RankerConfig) -> float:
    device = data.rating.device
    teacher = load_teacher(teacher_dir, device)
    teacher_rating = cached_teacher_outputs(teacher, data, teacher_ref(teacher_dir, data), states=False).prediction
    features = ranker_features(data)
    torch.manual_seed(0)
    model = Reference(features, student).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, fused=True if device.type == "cuda" else None)
    names = [name for name, _ in features]
    bag_index = names.index("genre")
    per_row = [(data.user_features if n in data.user_features else data.item_features)[n] for n in names
               if n != "genre"]
    keys = [data.user if n in data.user_features else data.item for n in names if n != "genre"]
    # each item's genres padded to the longest bag (id 0, weight 0), weighted 1/length: the bag's mean
    lengths = data.genre_offsets[1:] - data.genre_offsets[:-1]
    slots = torch.arange(int(lengths.max()), device=device)
    real = slots < lengths[:, None]
    bags = torch.where(real, data.genre_values[(data.genre_offsets[:-1, None] + slots).clamp(
        max=data.genre_values.numel() - 1)], 0)
    weights = real / lengths.clamp(min=1)[:, None]
    _wait(data)
    start = time.perf_counter()
    for _ in range(epochs):
        order = rows[torch.randperm(rows.numel(), device=device)]
        for s in range(0, order.numel(), batch):
            r = order[s:s + batch]
            single = [table[key[r]] for table, key in zip(per_row, keys)]
            item = data.item[r]
            prediction = model(single, bags[item], weights[item], bag_index)
            loss = 0.9 * F.mse_loss(prediction, data.rating[r]) + F.mse_loss(prediction, teacher_rating[r])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _wait(data)
    return epochs * rows.numel() / (time.perf_counter() - start)


def _measure(job: tuple[str, str, str, str, int, int, str, int]) -> float:
    loop, split_dir, device, teacher_dir, batch, epochs, arch, threads = job
    torch.set_num_threads(threads)
    data = load_split(split_dir).to(resolve_device(device))
    rate = reckd_rate if loop == "reckd" else reference_rate
    return rate(data, Path(teacher_dir), data.rows("train"), batch, epochs,
                dataclasses.replace(RankerConfig.student(), arch=arch))


def measure(loop: str, args, batch: int, workers: int) -> float:
    """Ratings/s of ``loop``: one process, or ``workers`` processes at once (summed)."""
    job = (loop, args.split_dir, args.device, args.teacher, batch, args.epochs, args.arch)
    if workers == 1:
        return _measure((*job, torch.get_num_threads()))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(_measure, [(*job, 1)] * workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split_dir", nargs="?", default="runs/ml-100k/split")
    parser.add_argument("--teacher", default="runs/ml-100k/teacher-mix")
    parser.add_argument("--arch", default=RankerConfig.student().arch, choices=ARCHS,
                        help="the student's interaction (default: the default student's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both loops run there)")
    parser.add_argument("--batch", default="4096", help="batch sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel figure")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"| loop | batch | processes × threads | ratings/s (best of {args.repeats}) | ms / step |")
    print("|---|---:|---|---:|---:|")
    for batch in (int(b) for b in args.batch.split(",")):
        for workers in sorted({1, args.workers}):
            reckd, reference = [], []
            for _ in range(args.repeats):  # alternate, so a noisy neighbour slows both alike
                reckd.append(measure("reckd", args, batch, workers))
                reference.append(measure("reference", args, batch, workers))
            layout = f"1 × {torch.get_num_threads()}" if workers == 1 else f"{workers} × 1"
            for name, rate in ((f"reckd `fit`, `{args.arch}` (torchrec EBC + KJT, kd from the teacher cache, "
                                "validation each epoch)", max(reckd)),
                               ("plain PyTorch reference (nn.EmbeddingBag, same sizes, no validation)", max(reference))):
                print(f"| {name} | {batch} | {layout} | {rate:,.0f} | {1000 * batch * workers / rate:.2f} |")
            print(f"| ratio reckd / reference | {batch} | {layout} | {max(reckd) / max(reference):.2f} | |")
    print(f"\n(device: {device}{' — ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__})")


if __name__ == "__main__":
    main()
