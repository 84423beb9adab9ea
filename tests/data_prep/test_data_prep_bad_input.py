"""Every bad input of the issue gives a DataPrepError naming file/line/flag with expected vs found, a
non-zero CLI exit, and leaves no partial output (and no temp folders) behind."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import ML100K_DATA, ML1M_MOVIES, SMALL, md5_of

from data_prep.api import fetch, prepare, split
from data_prep.cli import main
from data_prep.datasets import GROUPLENS_URL
from data_prep.errors import DataPrepError
from data_prep.folder import LOCK, MARKER
from data_prep.sources import grouplens


def leftovers(root: Path) -> list[str]:
    """Temp files/folders (our staging names start with a dot) anywhere under root; the lock and owner marker
    of a folder a command finished writing are not leftovers."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name not in (LOCK, MARKER))


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file's (it names the last process that held the folder)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK}


# --- checksums -----------------------------------------------------------------------------------------

def test_local_archive_must_match_grouplens_md5(official_zip, tmp_path):
    archive = official_zip("ml-100k")
    with pytest.raises(DataPrepError) as err:
        fetch("ml-100k", tmp_path / "data", source=str(archive))
    message = str(err.value)
    assert str(archive) in message and "checksum mismatch" in message
    assert "expected md5 0e33842e24a9c977be4e0107933c0723" in message and f"found {md5_of(archive)}" in message
    assert not (tmp_path / "data").exists()


def test_wrong_md5_flag_is_a_mismatch(official_zip, tmp_path):
    with pytest.raises(DataPrepError, match=r"checksum mismatch: expected md5 0{32}, found [0-9a-f]{32}"):
        fetch("ml-1m", tmp_path / "data", source=str(official_zip("ml-1m")), md5="0" * 32)


def test_md5_flag_must_look_like_one(official_zip, tmp_path):
    with pytest.raises(DataPrepError, match="--md5: expected 32 hex digits, found 'abc'"):
        fetch("ml-1m", tmp_path / "data", source=str(official_zip("ml-1m")), md5="abc")


def test_grouplens_download_is_verified(official_zip, tmp_path, monkeypatch):
    archive = official_zip("ml-1m")
    monkeypatch.setattr(grouplens, "download", lambda url, target: shutil.copyfile(archive, target))
    with pytest.raises(DataPrepError, match=r"https://files.grouplens.org/datasets/movielens/ml-1m.zip: checksum "
                                            r"mismatch: expected md5 c4d9eecfca2ab87c1945afe126590906"):
        fetch("ml-1m", tmp_path / "data", source="grouplens")
    assert not (tmp_path / "data").exists()
    fetch("ml-1m", tmp_path / "data", source="grouplens", md5=md5_of(archive))  # the same bytes, declared: accepted
    assert (tmp_path / "data/ml-1m/raw/ml-1m.zip").read_bytes() == archive.read_bytes()


def test_latest_small_reads_the_published_sidecar(official_zip, tmp_path, monkeypatch):
    archive = official_zip("ml-latest-small")
    served = {GROUPLENS_URL + "ml-latest-small.zip": archive}
    sidecar = tmp_path / "sidecar.md5"
    sidecar.write_text("MD5 (ml-latest-small.zip) = " + "f" * 32 + "\n")
    served[GROUPLENS_URL + "ml-latest-small.zip.md5"] = sidecar
    monkeypatch.setattr(grouplens, "download", lambda url, target: shutil.copyfile(served[url], target))
    with pytest.raises(DataPrepError, match="expected md5 f{32}"):
        fetch("ml-latest-small", tmp_path / "data", source="grouplens")
    sidecar.write_text(f"MD5 (ml-latest-small.zip) = {md5_of(archive)}\n")
    fetch("ml-latest-small", tmp_path / "data", source="grouplens")
    assert sorted(p.name for p in (tmp_path / "data/ml-latest-small/raw").iterdir()) == [
        ".lock", ".owner.json", "fetch.json", "ml-latest-small.zip"]


def test_local_latest_small_without_any_md5_is_refused(official_zip, tmp_path):
    with pytest.raises(DataPrepError, match="expected GroupLens' MD5 for ml-latest-small.zip .* pass --md5"):
        fetch("ml-latest-small", tmp_path / "data", source=str(official_zip("ml-latest-small")))


def test_mirror_wheel_sha256_is_verified(fake_wheel, tmp_path):
    with pytest.raises(DataPrepError, match=r"recbole-1.2.1-py3-none-any.whl: checksum mismatch: expected sha256 "
                                            r"9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"):
        fetch("ml-100k", tmp_path / "data", source=str(fake_wheel))
    assert not (tmp_path / "data").exists()


# --- archives ------------------------------------------------------------------------------------------

def test_truncated_archive(official_zip, tmp_path):
    archive = official_zip("ml-1m")
    cut = tmp_path / "ml-1m.zip"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataPrepError, match=f"{cut}: expected a zip archive, found a truncated or non-zip file"):
        fetch("ml-1m", tmp_path / "data", source=str(cut), md5=md5_of(cut))


def test_corrupt_member_fails_its_crc(official_zip, tmp_path):
    data = bytearray(official_zip("ml-100k").read_bytes())
    start = data.index(b"ml-100k/u.data") + len("ml-100k/u.data")  # first bytes of u.data's compressed data
    data[start + 5:start + 15] = bytes(10)
    bad = tmp_path / "ml-100k.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataPrepError, match="expected (intact members|a complete zip archive)"):
        fetch("ml-100k", tmp_path / "data", source=str(bad), md5=md5_of(bad))


def test_non_zip_archive(tmp_path):
    fake = tmp_path / "ml-20m.zip"
    fake.write_text("<html>Not Found</html>")
    with pytest.raises(DataPrepError, match="expected a zip archive, found a truncated or non-zip file"):
        fetch("ml-20m", tmp_path / "data", source=str(fake), md5=md5_of(fake))


def test_missing_file_in_archive(official_zip, tmp_path):
    archive = official_zip("ml-1m", drop=("users.dat",))
    with pytest.raises(DataPrepError, match=f"{archive}: expected ratings.dat, movies.dat, users.dat in the archive, "
                                            "found no users.dat"):
        fetch("ml-1m", tmp_path / "data", source=str(archive), md5=md5_of(archive))
    assert not (tmp_path / "data").exists()


def test_missing_file_in_folder(recbole_folder, tmp_path):
    (recbole_folder / "ml-100k.item").unlink()
    with pytest.raises(DataPrepError, match="found no ml-100k.item"):
        fetch("ml-100k", tmp_path / "data", source=str(recbole_folder))


# --- rows ----------------------------------------------------------------------------------------------

def prepare_with(official_zip, tmp_path, dataset: str, **replace: bytes) -> None:
    archive = official_zip(dataset, replace={k.replace("_", "."): v for k, v in replace.items()})
    fetch(dataset, tmp_path / "data", source=str(archive), md5=md5_of(archive))
    prepare(dataset, tmp_path / "data")


@pytest.mark.parametrize(("dataset", "member", "text", "expected"), [
    ("ml-100k", "u_data", ML100K_DATA.replace("2\t3\t1\t888551000", "2\t3\t1"),
     r"ml-100k.zip:ml-100k/u.data line 4: expected 4 fields separated by '\\t', found 3: '2\\t3\\t1'"),
    ("ml-100k", "u_data", ML100K_DATA.replace("3\t4\t2\t", "3\t4\tgood\t"),
     r"u.data line 5, column 'rating': expected a number, found 'good'"),
    ("ml-100k", "u_data", ML100K_DATA + "\n4\t1\t3\t889237470\n", r"u.data line 7: expected a row, found an empty line"),
    ("ml-1m", "movies_dat", ML1M_MOVIES.replace("1193::One", "1193::::One"),
     r"ml-1m/movies.dat line 2: expected 3 fields separated by '::', found 4"),
    ("ml-1m", "movies_dat", ML1M_MOVIES.replace("Drama\n3408", "Drama||Crime\n3408"),
     r"movies.dat line 2: expected genre names, found an empty one"),
    ("ml-20m", "ratings_csv", "userId,movieId,rating\n1,2,3.5\n", r"ratings.csv line 1: expected header 'userId,movieId,rating,timestamp'"),
    ("ml-20m", "movies_csv", 'movieId,title,genres\n2,"Jumanji (1995),Adventure\n29,x,Drama\n',
     r"movies.csv line \d: expected (a CSV row|3 fields)"),
    ("ml-20m", "ratings_csv", "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,999,4.0,1112484676\n",
     r"ratings.csv line 3: expected a item_id listed in .*movies.csv, found 999"),
])
def test_malformed_rows_name_file_and_line(official_zip, tmp_path, dataset, member, text, expected):
    with pytest.raises(DataPrepError, match=expected):
        prepare_with(official_zip, tmp_path, dataset, **{member: text.encode("latin-1")})
    assert not (tmp_path / "data" / dataset / "canonical").exists()
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize(("dataset", "member", "text", "expected"), [
    ("ml-100k", "u_data", ML100K_DATA.replace("1\t2\t3\t", "1\t2\t6\t"), "u.data line 2: expected a rating from 1 to 5 in steps of 1, found 6"),
    ("ml-100k", "u_data", ML100K_DATA.replace("1\t2\t3\t", "1\t2\t3.5\t"), "u.data line 2: expected a rating from 1 to 5 in steps of 1, found 3.5"),
    ("ml-20m", "ratings_csv", "userId,movieId,rating,timestamp\n1,2,5.5,1112486027\n", "ratings.csv line 2: expected a rating from 0.5 to 5 in steps of 0.5, found 5.5"),
    ("ml-20m", "ratings_csv", "userId,movieId,rating,timestamp\n1,2,3.25,1112486027\n", "found 3.25"),
    ("ml-20m", "ratings_csv", "userId,movieId,rating,timestamp\n1,2,0,1112486027\n", "found 0"),
])
def test_rating_outside_the_scale(official_zip, tmp_path, dataset, member, text, expected):
    with pytest.raises(DataPrepError, match=expected):
        prepare_with(official_zip, tmp_path, dataset, **{member: text.encode()})


def test_failed_prepare_keeps_the_previous_canonical_folder(official_zip, tmp_path):
    prepare_with(official_zip, tmp_path, "ml-100k")
    before = tree(tmp_path / "data/ml-100k/canonical")
    with pytest.raises(DataPrepError):
        prepare_with(official_zip, tmp_path, "ml-100k", u_data=b"1\t2\t9\t874965758\n")
    assert tree(tmp_path / "data/ml-100k/canonical") == before
    assert leftovers(tmp_path / "data") == []


# --- names and flags -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda root: fetch("ml-5m", root), lambda root: prepare("ml-5m", root), lambda root: split("ml-5m", root / "out", root),
])
def test_unknown_dataset(tmp_path, call):
    with pytest.raises(DataPrepError, match="unknown dataset 'ml-5m'; expected one of ml-100k, ml-1m, ml-10m"):
        call(tmp_path)
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"holdout_genres": "Drama,Westerns"}, r"--holdout-genres: expected genres of this dataset \(Action, Adventure, .*\), found Westerns"),
    ({"holdout_genres": "Drama,,Comedy"}, "--holdout-genres: expected genre names separated by commas, found an empty name at position 2"),
    ({"holdout_genres": "Drama,"}, "found an empty name at position 2"),
    ({"val": 0.5, "test": 0.5}, r"--val/--test: expected fractions that sum below 1 \(train keeps the rest\), found 0.5 \+ 0.5 = 1"),
    ({"val": 0.6, "test": 0.7}, "found 0.6 \\+ 0.7 = 1.3"),
    ({"val": -0.1}, r"--val: expected a fraction in \(0, 1\) \(validation ratings pick the best epoch\), found -0.1"),
    ({"val": 0.0}, r"--val: expected a fraction in \(0, 1\) .*, found 0.0"),
    ({"test": 0.0}, r"--test: expected a fraction in \(0, 1\), found 0.0"),
    ({"scheme": "leave-one-out"}, "--scheme: expected one of random, temporal, found 'leave-one-out'"),
    ({"sparse_below": 1.5}, r"--sparse-below: expected a share in \(0, 1\)"),
    ({"holdout_genres": ",".join(SMALL_GENRES := ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure",
                                                   "Children's", "Crime"))}, "expected the teacher to keep some training ratings"),
])
def test_bad_split_flags_leave_no_output(small_synth, tmp_path, kwargs, expected):
    out = tmp_path / "split"
    with pytest.raises(DataPrepError, match=expected):
        split("synth", out, small_synth, **kwargs)
    assert not out.exists() and leftovers(tmp_path) == []


def test_failed_split_keeps_the_previous_output(small_synth, tmp_path):
    out = tmp_path / "split"
    split("synth", out, small_synth, seed=3)
    before = tree(out)
    with pytest.raises(DataPrepError):
        split("synth", out, small_synth, seed=4, holdout_genres="Nope")
    assert tree(out) == before


def test_split_before_prepare_says_what_to_run(tmp_path):
    with pytest.raises(DataPrepError, match=r"expected canonical data for ml-1m, found none; run `data_prep prepare ml-1m`"):
        split("ml-1m", tmp_path / "out", tmp_path)


def test_prepare_before_fetch_says_what_to_run(tmp_path):
    with pytest.raises(DataPrepError, match=r"expected fetched data for ml-10m, found none; run `data_prep fetch ml-10m`"):
        prepare("ml-10m", tmp_path)


def test_synth_flags():
    from data_prep.synth import SynthConfig
    with pytest.raises(DataPrepError, match=r"--ratings: expected at most users×items = 10×10 = 100"):
        SynthConfig(ratings=101, users=10, items=10)
    with pytest.raises(DataPrepError, match="--genres: expected 1..100, found 0"):
        SynthConfig(ratings=10, genres=0)


# --- the CLI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["fetch", "ml-3m"], ["prepare", "ml-3m"], ["split", "synth", "--val", "0.7", "--test", "0.3"],
    ["split", "synth", "--holdout-genres", "Opera"], ["info", "nowhere"],
])
def test_cli_reports_errors_and_exits_non_zero(small_synth, tmp_path, capsys, argv):
    code = main([*argv, *(["--data-dir", str(small_synth)] if argv[0] != "info" else []),
                 *(["--out", str(tmp_path / "o")] if argv[0] == "split" else [])])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("data_prep: error: ") and "expected" in err
    assert not (tmp_path / "o").exists()


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["split", "synth", "--val", "lots"])
    assert exit_.value.code == 2 and "argument --val: invalid float value: 'lots'" in capsys.readouterr().err


def test_out_folder_of_other_files_is_refused_and_kept(small_synth, tmp_path):
    precious = tmp_path / "Documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(DataPrepError, match=f"--out {precious}: expected a new or empty folder, or one written by "
                                            "`data_prep split` before, found thesis.tex; choose another --out"):
        split("synth", precious, small_synth)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]  # not even a lock file left in it
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataPrepError, match="--out .*a-file: expected a folder, found a file"):
        split("synth", tmp_path / "a-file", small_synth)


@pytest.mark.parametrize(("text", "expected"), [
    ("", "ratings.csv: expected at least one row, found none"),
    ("userId,movieId,rating,timestamp\n", "ratings.csv: expected at least one row, found none"),
    ("userId,movieId,rating,timestamp\n\n1,2,3.5,1112486027\n", "ratings.csv line 2: expected a row, found an empty line"),
])
def test_empty_files_and_lines(official_zip, tmp_path, text, expected):
    if text == "":
        expected = "ratings.csv line 1: expected header 'userId,movieId,rating,timestamp', found ''"
    with pytest.raises(DataPrepError, match=expected):
        prepare_with(official_zip, tmp_path, "ml-20m", ratings_csv=text.encode())


# --- empty validation or test sets ---------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"val": 0.00002}, r"--val 2e-05: expected at least one validation rating, found train 18000, val 0, test 2000 "
                       r"of 20000 ratings \(round\(2e-05 × 20000\) = 0\); raise --val"),
    ({"test": 0.00002}, r"--test 2e-05: expected at least one test rating, found train 18000, val 2000, test 0 "
                        r"of 20000 ratings \(round\(2e-05 × 20000\) = 0\); raise --test"),
    ({"scheme": "temporal", "val": 0.004}, r"--val 0.004: expected at least one validation rating, found .* val 0, "
                                           r".*\(round\(0.004 × a user's ratings\) = 0 for every user \(the most active has \d+\)\)"),
])
def test_fractions_that_round_to_no_rating_are_refused(small_synth, tmp_path, kwargs, expected):
    with pytest.raises(DataPrepError, match=expected):
        split("synth", tmp_path / "split", small_synth, **kwargs)
    assert not (tmp_path / "split").exists()


def test_smallest_fractions_that_leave_one_rating_pass(small_synth, tmp_path):
    m = split("synth", tmp_path / "split", small_synth, val=0.5 / 20_000, test=0.5 / 20_000)  # round(0.5) = 1
    assert (m["counts"]["val"], m["counts"]["test"]) == (1, 1)


# --- damaged files that data_prep reads back ---------------------------------------------------------------

@pytest.fixture
def canonical_copy(small_synth, tmp_path) -> Path:
    """A private copy of the synthetic DATA_DIR, to damage."""
    shutil.copytree(small_synth / "synth", tmp_path / "data" / "synth")
    return tmp_path / "data"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("name", "damage", "expected"), [
    ("ratings.parquet", truncate, "ratings.parquet: expected a parquet table, found a truncated or unreadable file"),
    ("items.parquet", truncate, "items.parquet: expected a parquet table, found a truncated or unreadable file"),
    ("users.parquet", truncate, "users.parquet: expected a parquet table, found a truncated or unreadable file"),
    ("ratings.parquet", lambda p: pl.read_parquet(p).drop("rating").write_parquet(p),
     "ratings.parquet: expected columns user_id, item_id, rating, timestamp, found no rating"),
    ("source.json", lambda p: p.write_text('{"dataset": "synth", "source"'),
     r"source.json line 1: expected a canonical source record, found bad JSON"),
    ("source.json", lambda p: p.write_text('{"dataset": "synth"}'),
     r"source.json: expected a canonical source record with dataset, source, checksum, layout, rating_scale, found no source"),
])
def test_split_names_a_damaged_canonical_file(canonical_copy, tmp_path, name, damage, expected):
    damage(canonical_copy / "synth/canonical" / name)
    with pytest.raises(DataPrepError) as err:
        split("synth", tmp_path / "out", canonical_copy)
    assert str(err.value).startswith(str(canonical_copy / "synth/canonical" / name)) and expected in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "expected"), [
    ('{"dataset": "synth",\n "counts": ', r"manifest.json line 2: expected a split manifest \(written by `data_prep split`\), found bad JSON"),
    ("[1, 2]", r"manifest.json: expected a split manifest \(written by `data_prep split`\) \(a JSON object\), found a list"),
    ('{"dataset": "synth"}', r"manifest.json: expected a split manifest .* with dataset, .*, found no source, source_checksum"),
    (None, r"manifest.json: expected a split manifest \(written by `data_prep split`\), found no file"),
])
def test_info_names_a_damaged_manifest(small_synth, tmp_path, capsys, text, expected):
    out = tmp_path / "split"
    split("synth", out, small_synth)
    if text is None:
        (out / "manifest.json").unlink()
    else:
        (out / "manifest.json").write_text(text)
    assert main(["info", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"data_prep: error: {out / 'manifest.json'}")
    assert re.search(expected, err), err


def test_prepare_names_a_damaged_fetch_record(official_zip, tmp_path):
    archive = official_zip("ml-1m")
    raw = fetch("ml-1m", tmp_path, source=str(archive), md5=md5_of(archive))
    (raw / "fetch.json").write_text('{"dataset": "ml-1m", "source": "local"}')
    with pytest.raises(DataPrepError, match=rf"{raw / 'fetch.json'}: expected a fetch record with dataset, source, "
                                            r"checksum, container, path, layout, found no checksum, container, path, layout"):
        prepare("ml-1m", tmp_path)
    (raw / "fetch.json").write_text("")
    with pytest.raises(DataPrepError, match=rf"{raw / 'fetch.json'} line 1: expected a fetch record, found bad JSON"):
        prepare("ml-1m", tmp_path)
