"""`info`: the genre table of a split folder, as plain text."""
from __future__ import annotations

from pathlib import Path

from data_prep.atomic import read_json

MANIFEST_KEYS = ("dataset", "source", "source_checksum", "scheme", "seed", "val", "test", "holdout_genres", "counts",
                 "rule", "genres")
COLUMNS = ("genre", "class", "train", "val", "test", "teacher", "users", "items", "share")


def read_manifest(split_dir: str | Path) -> dict:
    """A split folder's manifest.json; missing, malformed or lacking what `info` shows: an error naming it."""
    return read_json(Path(split_dir) / "manifest.json", "a split manifest (written by `data_prep split`)", MANIFEST_KEYS)


def info(split_dir: str | Path) -> str:
    """A header (dataset, source, scheme, counts, rule) and one row per genre, most training ratings first;
    holdout genres are marked `*`."""
    m = read_manifest(split_dir)
    c = m["counts"]
    rows = [
        (f"{g}{'*' if v['holdout'] else ''}", v["class"], v["train"], v["val"], v["test"], v["teacher_train"],
         v["users"], v["items"], f"{100 * v['train_share']:.2f}%")
        for g, v in sorted(m["genres"].items(), key=lambda kv: (-kv[1]["train"], kv[0]))
    ]
    cells = [COLUMNS] + [tuple(str(x) for x in row) for row in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(COLUMNS))]
    lines = [
        f"{m['dataset']}  source {m['source']} ({m['source_checksum']})",
        f"scheme {m['scheme']}  seed {m['seed']}  val {m['val']}  test {m['test']}  "
        f"holdout {', '.join(m['holdout_genres']) or 'none'}",
        f"ratings {c['ratings']}  train {c['train']}  val {c['val']}  test {c['test']}  "
        f"teacher {c['teacher_train']}  users {c['users']}  items {c['items']}",
        f"rule: {m['rule']['text']}",
        "",
    ]
    for k, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(v["holdout"] for v in m["genres"].values()):
        lines.append("* holdout genre: absent from the teacher's pre-training set")
    return "\n".join(lines) + "\n"
