"""Duplicate (user, item) ratings: an error naming the repeated line and the first one, in `prepare` and
again in `split` (for canonical data written otherwise); `--duplicates keep-latest` keeps each pair's
latest rating and records how many were dropped; `synth` never makes a duplicate."""
from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from conftest import CSV_RATINGS, ML100K_DATA, SMALL, md5_of

from data_prep import synth as synth_module
from data_prep.api import fetch, prepare, split
from data_prep.cli import main
from data_prep.errors import DataPrepError
from data_prep.synth import generate

# line 7 repeats line 1's pair (user 1, item 1) with a later timestamp; line 8 repeats line 4's, earlier
ML100K_REPEATS = ML100K_DATA + "1\t1\t2\t874965999\n2\t3\t5\t888550000\n"


def fetched(official_zip, tmp_path, dataset: str, **replace: bytes):
    archive = official_zip(dataset, replace={k.replace("_", "."): v for k, v in replace.items()})
    fetch(dataset, tmp_path / "data", source=str(archive), md5=md5_of(archive))
    return tmp_path / "data"


def test_prepare_names_the_repeated_line_and_the_first(official_zip, tmp_path):
    root = fetched(official_zip, tmp_path, "ml-100k", u_data=ML100K_REPEATS.encode())
    with pytest.raises(DataPrepError) as err:
        prepare("ml-100k", root)
    assert str(err.value) == (
        "ml-100k.zip:ml-100k/u.data line 7: expected each (user_id, item_id) once, found user 1 item 1 again "
        "(first at line 1); pass --duplicates keep-latest to keep each pair's latest rating")
    assert not (root / "ml-100k/canonical").exists()


def test_csv_lines_count_the_header(official_zip, tmp_path):
    text = CSV_RATINGS + "3,29,4.0,1094785741\n"  # line 7 repeats line 6
    root = fetched(official_zip, tmp_path, "ml-20m", ratings_csv=text.encode())
    with pytest.raises(DataPrepError, match=r"ratings.csv line 7: expected each \(user_id, item_id\) once, found "
                                            r"user 3 item 29 again \(first at line 6\)"):
        prepare("ml-20m", root)


def test_keep_latest_keeps_the_latest_by_timestamp_and_records_the_count(official_zip, tmp_path):
    root = fetched(official_zip, tmp_path, "ml-100k", u_data=ML100K_REPEATS.encode())
    canonical = prepare("ml-100k", root, duplicates="keep-latest")
    ratings = pl.read_parquet(canonical / "ratings.parquet")
    assert ratings.rows() == [  # (1, 1): line 7 is later than line 1; (2, 3): line 4 is later than line 8
        (1, 1, 2.0, 874965999), (1, 2, 3.0, 876893171), (2, 1, 4.0, 888550871), (2, 3, 1.0, 888551000),
        (3, 4, 2.0, 889237455), (3, 5, 5.0, 889237460)]
    source = json.loads((canonical / "source.json").read_text())
    assert source["duplicates"] == {"policy": "keep-latest", "dropped": 2}


def test_keep_latest_breaks_a_timestamp_tie_by_the_later_line(official_zip, tmp_path):
    root = fetched(official_zip, tmp_path, "ml-100k", u_data=(ML100K_DATA + "1\t1\t1\t874965758\n").encode())
    ratings = pl.read_parquet(prepare("ml-100k", root, duplicates="keep-latest") / "ratings.parquet")
    assert ratings.filter((pl.col("user_id") == 1) & (pl.col("item_id") == 1))["rating"].to_list() == [1.0]


def test_clean_input_records_no_drop_and_the_cli_flag(official_zip, tmp_path, capsys):
    root = fetched(official_zip, tmp_path, "ml-100k")
    source = json.loads((prepare("ml-100k", root) / "source.json").read_text())
    assert source["duplicates"] == {"policy": "error", "dropped": 0}
    root = fetched(official_zip, tmp_path / "b", "ml-100k", u_data=ML100K_REPEATS.encode())
    assert main(["prepare", "ml-100k", "--data-dir", str(root)]) == 1
    assert "u.data line 7: expected each (user_id, item_id) once" in capsys.readouterr().err
    assert main(["prepare", "ml-100k", "--data-dir", str(root), "--duplicates", "keep-latest"]) == 0
    assert "6 ratings" in capsys.readouterr().out
    with pytest.raises(DataPrepError, match="--duplicates: expected one of error, keep-latest, found 'first'"):
        prepare("ml-100k", root, duplicates="first")


def test_split_refuses_canonical_data_with_a_repeated_pair(small_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_synth / "synth", root / "synth")
    path = root / "synth/canonical/ratings.parquet"
    ratings = pl.read_parquet(path)
    twice = pl.concat([ratings, ratings[5:6].with_columns(pl.col("rating") + 0)]).sort("user_id", "timestamp", "item_id")
    twice.write_parquet(path)
    u, i = ratings.row(5)[:2]
    rows = twice.with_row_index("row", offset=1).filter((pl.col("user_id") == u) & (pl.col("item_id") == i))["row"]
    with pytest.raises(DataPrepError, match=(
            rf"{path} row {rows[1]}: expected each \(user_id, item_id\) once, found user {u} item {i} again "
            rf"\(first at row {rows[0]}\)")):
        split("synth", tmp_path / "out", root)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dense_cells", [synth_module.DENSE_CELLS, 0])  # exact sampling, and the redraw loop
def test_synth_never_makes_a_duplicate(monkeypatch, dense_cells):
    monkeypatch.setattr(synth_module, "DENSE_CELLS", dense_cells)
    for config in (SMALL, SMALL.__class__(ratings=2_000, users=50, items=50, genres=4, seed=3)):  # 80% of the cells
        ratings = generate(config)[0]
        assert ratings.height == config.ratings
        assert ratings.select("user_id", "item_id").is_unique().all()
