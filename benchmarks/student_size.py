"""How large a student, how many teacher-labelled pairs, and how much weight on the genre's own ratings
does a genre student need to reach its teacher? Each setting distils `kd+aug` students (seed 0, distill's
defaults otherwise) on the genres asked into ROOT/student-size/<setting>/ and prints, per genre class, the
macro-average validation RMSE — what chooses — beside the test RMSE (only reported), the student's
parameters as a share of the teacher's, and on how many genres its test RMSE is at most the teacher's.

    python benchmarks/student_size.py                                      # the README's rows, all genres
    python benchmarks/student_size.py --genres sparse --settings 'e32-h128,64-a16-w0.03'

A setting is ``e<embedding>-h<W1,W2,…>-a<augment>`` with an optional ``-w<kd's task weight>`` (without
it, kd's default: 0.9, METHODS.md's) and an optional leading ``<arch>-`` (``dcn-e48-h256,128-a16-w0.1``;
without it, ``mlp``); finished runs are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
from pathlib import Path

from reckd.models.ranker import ARCHS, RankerConfig
from reckd.train.distill import DistillConfig, distill
from reckd.train.io import read_json

from readme_split import readme_split, readme_teacher

SETTINGS = ("e8-h32,16-a4", "e8-h32,16-a16", "e32-h128,64-a4", "e32-h128,64-a16",  # kd's task weight 0.9
            "e32-h128,64-a16-w0.3", "e32-h128,64-a16-w0.1", "e32-h128,64-a16-w0.03", "e32-h128,64-a16-w0",
            "e8-h32,16-a16-w0.1", "e32-h128,64-a4-w0.1", "e32-h128,64-a64-w0.1", "e64-h256,128-a16-w0.1",
            "dcn-e48-h256,128-a16-w0.1",  # the default student (RankerConfig.student(), --augment 16)
            "deepfm-e64-h256,128-a16-w0.1", "dlrm-e64-h256,128-a16-w0.1", "e80-h256,128-a16-w0.1")


def parse(setting: str) -> tuple[str, int, tuple[int, ...], int, str | None]:
    found = re.fullmatch(rf"(?:({'|'.join(ARCHS)})-)?e(\d+)-h([\d,]+)-a(\d+)(?:-w([\d.]+))?", setting)
    if not found:
        raise SystemExit(f"--settings: expected [<arch>-]e<embedding>-h<W1,W2,…>-a<augment>[-w<weight>] "
                         f"(arch one of {', '.join(ARCHS)}), found {setting!r}")
    arch = found[1] or "mlp"  # the rows named before the student could be another architecture
    return arch, int(found[2]), tuple(int(w) for w in found[3].split(",")), int(found[4]), found[5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="where the README's split and teacher are (made if missing)")
    parser.add_argument("--settings", type=lambda s: s.split(";"), default=list(SETTINGS),
                        help="semicolon-separated settings (default: the README's)")
    parser.add_argument("--genres", default="all", help="all|dense|sparse|G1,G2,… (as distill's)")
    parser.add_argument("--teacher", help="a teacher folder of the same split (default: the README's, made if missing)")
    args = parser.parse_args()
    root = Path(args.root)
    data = readme_split(root)
    teacher = Path(args.teacher) if args.teacher else readme_teacher(root, data)
    teacher_result = read_json(teacher / "result.json")
    by_genre, teacher_params = teacher_result["genres"], teacher_result["parameters"]
    classes = {genre: info["class"] for genre, info in data.manifest["genres"].items()}
    print("| setting | parameters (% of teacher) | val dense | val sparse | test dense | test sparse | "
          "genres ≤ teacher | run seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for setting in args.settings:
        arch, embedding, hidden, augment, weight = parse(setting)
        model = dataclasses.replace(RankerConfig.student(), arch=arch, embedding_dim=embedding, hidden=hidden)
        name = setting if not args.teacher else f"{teacher.name}-{setting}"
        config = DistillConfig(genres=args.genres, methods=("kd+aug",), seeds=(0,), augment=augment, model=model,
                               options={"kd": {"w_task": weight}} if weight is not None else {})
        results = distill(data, teacher, root / "student-size" / name, config, progress=False)

        def macro(key: str, klass: str) -> str:
            values = [r[key] for r in results if classes[r["genre"]] == klass]
            return f"{statistics.fmean(values):.4f}" if values else "—"

        matched = sum(r["test_rmse"] <= by_genre[r["genre"]]["test_rmse"] for r in results)
        params = results[0]["parameters"]
        print(f"| `{setting}` | {params:,} ({100 * params / teacher_params:.1f}%) | {macro('val_rmse', 'dense')} | "
              f"{macro('val_rmse', 'sparse')} | {macro('test_rmse', 'dense')} | {macro('test_rmse', 'sparse')} | "
              f"{matched} of {len(results)} | {sum(r['seconds'] for r in results):.0f} |", flush=True)


if __name__ == "__main__":
    main()
