"""Which teachers to combine (README "Teacher architectures"): every combination of finished teacher
folders of the README's split, as `reckd ensemble` would make it — the mean of all their rankers, each
weighted alike — with its validation RMSE (what chooses) beside the test RMSE overall and macro-averaged
over dense and sparse genres (reported, never used to choose).

    python benchmarks/ensembles.py runs/ml-100k/teacher-dcn5 runs/ml-100k/teacher-dcn5-seed5 runs/ml-100k/teacher-mlp5

Each folder's predictions on the teacher's validation and test ratings are computed once and the
combinations averaged from them (seconds, where `reckd ensemble` also ranks every genre's movies for
every user: minutes per combination). Where ROOT/teacher-mix exists, its recorded RMSEs are checked
against the same combination here.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import torch

from reckd.models.ensemble import Ensemble
from reckd.train.io import read_json
from reckd.train.loop import predict_rows, rmse
from reckd.train.teacher import load_teacher, teacher_ref

from readme_split import readme_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", nargs="+", help="`reckd pretrain` folders of the README's split")
    parser.add_argument("--root", default="runs/ml-100k", help="where the README's split is (made if missing)")
    args = parser.parse_args()
    root = Path(args.root)
    data = readme_split(root)
    val, test = data.rows("val", teacher_only=True), data.rows("test", teacher_only=True)
    classes = {g: info["class"] for g, info in data.manifest["genres"].items() if info["class"] != "excluded"}
    in_genre = {g: data.item_genre[data.item[test], data.genre_index(g)] for g in classes}
    members = {}
    for folder in args.teachers:
        teacher_ref(Path(folder), data)  # a teacher of another split is refused
        model = load_teacher(Path(folder))
        rankers = len(model.members) if isinstance(model, Ensemble) else 1
        with torch.no_grad():
            members[Path(folder).name] = rankers, predict_rows(model, None, data, val), predict_rows(model, None, data, test)
    print("| teachers combined | rankers | val RMSE | test RMSE | dense macro | sparse macro |\n|---|---:|---:|---:|---:|---:|")
    found = {}
    for k in range(1, len(members) + 1):
        for names in itertools.combinations(members, k):
            n = sum(members[m][0] for m in names)
            p_val, p_test = (sum(members[m][0] * members[m][i] for m in names) / n for i in (1, 2))
            macro = {c: statistics.fmean(rmse(p_test[in_genre[g]], data.rating[test][in_genre[g]])
                                         for g in classes if classes[g] == c) for c in ("dense", "sparse")}
            found[names] = rmse(p_val, data.rating[val]), rmse(p_test, data.rating[test])
            print(f"| {' + '.join(f'`{m}`' for m in names)} | {n} | {found[names][0]:.4f} | {found[names][1]:.4f} | "
                  f"{macro['dense']:.4f} | {macro['sparse']:.4f} |", flush=True)
    mix = root / "teacher-mix"
    if (mix / "result.json").is_file():
        recorded = read_json(mix / "result.json")
        names = tuple(Path(m).name for m in recorded["members"])
        if names in found:
            assert abs(found[names][0] - recorded["val_rmse"]) < 1e-4 and abs(found[names][1] - recorded["test_rmse"]) < 1e-4, (
                f"{mix}: recorded val/test {recorded['val_rmse']:.5f}/{recorded['test_rmse']:.5f}, here "
                f"{found[names][0]:.5f}/{found[names][1]:.5f}")
            print(f"\n{mix}: its recorded validation and test RMSE equal the row of {' + '.join(names)} (to 1e-4)")


if __name__ == "__main__":
    main()
