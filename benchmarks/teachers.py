"""The README's teacher-architecture table: each architecture pre-trained once (one start, the
teacher's sizes and training options, ``--bias`` on), beside the default teacher's two members (5 starts
each, `reckd pretrain`) and the default teacher, their ensemble (`reckd ensemble`) — parameters, validation RMSE (what chose the default), test RMSE overall and
macro-averaged over dense and sparse genres, best epoch and training time.

    python benchmarks/teachers.py [--root runs/ml-100k] [--archs mlp,dlrm,dcn,deepfm]
    python benchmarks/teachers.py --archs dlrm,dcn,deepfm --weight-decay 1e-4 --dropout 0.3   # a regularised row

Each architecture trains into ``ROOT/teachers/<arch>/`` (``<arch>-wd<W>-do<D>/`` with other regularisation;
a finished one of the same options is reused).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

from reckd.models.ranker import ARCHS
from reckd.train.io import read_json
from reckd.train.teacher import PretrainConfig, pretrain

from readme_split import readme_members, readme_split, readme_teacher


def macro(result: dict, classes: dict[str, str], kind: str) -> float:
    return statistics.fmean(g["test_rmse"] for name, g in result["genres"].items() if classes[name] == kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="folder for split/, the teacher (teacher-mix/, its members) and teachers/")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--weight-decay", type=float, default=1e-5, help="of every architecture's start (default 1e-5)")
    parser.add_argument("--dropout", type=float, default=0.1, help="of every architecture's start (default 0.1)")
    args = parser.parse_args()
    root = Path(args.root)
    data = readme_split(root)
    classes = {g: info["class"] for g, info in data.manifest["genres"].items()}
    rows = []
    base = PretrainConfig()
    wd, dropout = args.weight_decay, args.dropout
    # the first table's options (the flags' defaults): their folders are named by arch alone
    regularised = (wd, dropout) != (parser.get_default("weight_decay"), parser.get_default("dropout"))
    for arch in args.archs.split(","):
        config = PretrainConfig(model=dataclasses.replace(base.model, arch=arch, dropout=dropout),
                                train=dataclasses.replace(base.train, weight_decay=wd), restarts=1, combine="best")
        name = f"{arch}-wd{wd:g}-do{dropout:g}" if regularised else arch
        label = f"`{arch}` + bias, one start" + (f", weight decay {wd:g}, dropout {dropout:g}" if regularised else "")
        rows.append((label, pretrain(data, root / "teachers" / name, config)))
    teacher = readme_teacher(root, data)  # its members pre-trained first, where missing
    members = readme_members()
    for name, config in members.items():
        model, train = config.model, config.train
        rows.append((f"`{model.arch}` + bias, mean of {config.restarts} starts, weight decay {train.weight_decay:g}, "
                     f"dropout {model.dropout:g} (`{name}`)", read_json(root / name / "result.json")))
    rows.append((f"**default: the mean of {' and '.join(f'`{n}`' for n in members)} (`reckd ensemble`)**",
                 read_json(teacher / "result.json")))
    print("| teacher | parameters | val RMSE | test RMSE | dense macro | sparse macro | best epoch | train time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        epoch = r["best_epoch"] if isinstance(r["best_epoch"], int) else "/".join(map(str, r["best_epoch"]))
        print(f"| {name} | {r['parameters']:,} | {r['val_rmse']:.4f} | {r['test_rmse']:.4f} | "
              f"{macro(r, classes, 'dense'):.4f} | {macro(r, classes, 'sparse'):.4f} | {epoch} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
