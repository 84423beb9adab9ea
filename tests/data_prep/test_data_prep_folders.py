"""Only own folders are changed, by one writer at a time: `split`, `prepare`/`synth` and `fetch` claim their
output folder (a lock plus an owner marker, data_prep.folder), write their own files and nothing else, and
refuse a folder another program or command wrote, one that another live process is writing, or one they
cannot write — each with an error naming the folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import md5_of

from data_prep import atomic
from data_prep.api import fetch, prepare, split, synth
from data_prep.cli import main
from data_prep.errors import DataPrepError
from data_prep.folder import LOCK, MARKER

FILES = ["items.parquet", "manifest.json", "ratings.parquet", "users.parquet"]
HOLD = ("import sys\nfrom data_prep.folder import claim\n"
        "with claim(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK}


def test_fake_manifest_beside_a_user_file_is_refused_and_both_survive(small_synth, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "manifest.json").write_text('{"mine": true}\n')
    (out / "keep.txt").write_text("my notes\n")
    with pytest.raises(DataPrepError, match=rf"--out {out}: expected a new or empty folder, or one written by "
                                            r"`data_prep split` before, found keep.txt, manifest.json"):
        split("synth", out, small_synth)
    assert contents(out) == {"keep.txt": b"my notes\n", "manifest.json": b'{"mine": true}\n'}
    assert not (out / LOCK).exists()


def test_rerun_into_its_own_folder_is_byte_identical_and_keeps_a_user_file(small_synth, tmp_path):
    out = tmp_path / "split"
    split("synth", out, small_synth, seed=2)
    assert json.loads((out / MARKER).read_text()) == {"command": "data_prep split"}
    first = contents(out)
    (out / "notes.txt").write_text("added by hand\n")
    split("synth", out, small_synth, seed=2)
    assert contents(out) == first | {"notes.txt": b"added by hand\n"}
    split("synth", out, small_synth, seed=3)  # another split into the same folder: its files change, notes stay
    again = contents(out)
    assert again["notes.txt"] == b"added by hand\n" and again["ratings.parquet"] != first["ratings.parquet"]
    assert sorted(again) == sorted([MARKER, "notes.txt", *FILES])


def test_a_second_writer_is_told_who_holds_the_folder(small_synth, tmp_path, capsys):
    out = tmp_path / "split"
    split("synth", out, small_synth, seed=1)
    before = contents(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "data_prep split"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(DataPrepError, match=rf"--out {out}: in use by pid {holder.pid} on .* \(data_prep split, "
                                                r"since .*\); wait for it to finish or choose another --out"):
            split("synth", out, small_synth, seed=9)
        assert main(["split", "synth", "--data-dir", str(small_synth), "--out", str(out)]) == 1
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
        assert contents(out) == before
    finally:
        holder.communicate("")
    split("synth", out, small_synth, seed=9)  # the holder finished: the folder is free again
    assert contents(out)["manifest.json"] != before["manifest.json"]


def test_a_lock_whose_process_died_is_taken_over(small_synth, tmp_path):
    out = tmp_path / "split"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "data_prep split"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert split("synth", out, small_synth)["counts"]["ratings"] == 20_000


def test_a_folder_of_another_command_is_refused(small_synth, tmp_path):
    canonical = small_synth / "synth" / "canonical"
    before = contents(canonical)
    with pytest.raises(DataPrepError, match=rf"--out {canonical}: written by `data_prep canonical`, not "
                                            r"`data_prep split`; choose another --out"):
        split("synth", canonical, small_synth)
    assert contents(canonical) == before


def test_failed_write_leaves_the_earlier_split_and_no_temp_file(small_synth, tmp_path, monkeypatch):
    out = tmp_path / "split"
    split("synth", out, small_synth, seed=1)
    before = contents(out)

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    original = atomic.write_together
    monkeypatch.setattr(atomic, "write_together",
                        lambda folder, writers: original(folder, {**writers, "users.parquet": fail}))
    with pytest.raises(OSError, match="No space left"):
        split("synth", out, small_synth, seed=2)
    assert contents(out) == before
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_a_split_folder_from_before_owner_markers_is_taken_over(small_synth, tmp_path):
    out = tmp_path / "old"
    split("synth", out, small_synth, seed=4)
    (out / MARKER).unlink()
    (out / LOCK).unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    atomic.write_json(out / "manifest.json", {k: v for k, v in manifest.items() if k != "fingerprint"} | {"format": 1})
    split("synth", out, small_synth, seed=4)  # exactly the four files of a format-1 split: ours
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    assert (out / MARKER).exists()
    (out / MARKER).unlink()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DataPrepError, match="found items.parquet, keep.txt, manifest.json"):
        split("synth", out, small_synth, seed=4)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(small_synth, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(DataPrepError, match=rf"--out {out}: expected a folder this user can write, found: "
                                                r"Permission denied"):
            split("synth", out, small_synth)
    finally:
        out.chmod(0o755)
    assert list(out.iterdir()) == []


def test_a_folder_that_refuses_writes_is_named_even_as_root(small_synth, tmp_path, monkeypatch):
    """The same path as above, for runs as root (where chmod does not stop writes): the lock file cannot be made."""
    real_open = os.open

    def refusing(path, flags, *args):
        if str(path).endswith(LOCK):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    out = tmp_path / "locked"
    out.mkdir()
    with pytest.raises(DataPrepError, match=rf"--out {out}: expected a folder this user can write, found: Permission denied"):
        split("synth", out, small_synth)


# --- the canonical and raw folders ---------------------------------------------------------------------

def test_synth_and_prepare_refuse_a_canonical_folder_of_other_files(tmp_path, official_zip):
    canonical = tmp_path / "data/mine/canonical"
    canonical.mkdir(parents=True)
    (canonical / "source.json").write_text("{}")
    with pytest.raises(DataPrepError, match=rf"--name {canonical}: expected a new or empty folder, or one written "
                                            r"by `data_prep canonical` before, found source.json"):
        synth(300, 20, 20, 3, name="mine", data_dir=tmp_path / "data")
    assert contents(canonical) == {"source.json": b"{}"}

    archive = official_zip("ml-1m")
    fetch("ml-1m", tmp_path / "data", source=str(archive), md5=md5_of(archive))
    (tmp_path / "data/ml-1m/canonical").mkdir()
    (tmp_path / "data/ml-1m/canonical/thesis.tex").write_text("x")
    with pytest.raises(DataPrepError, match=r"--data-dir .*ml-1m/canonical: expected a new or empty folder, or one "
                                            r"written by `data_prep canonical` before, found thesis.tex"):
        prepare("ml-1m", tmp_path / "data")


def test_prepare_rerun_keeps_a_user_file_and_is_byte_identical(tmp_path, official_zip):
    archive = official_zip("ml-1m")
    fetch("ml-1m", tmp_path, source=str(archive), md5=md5_of(archive))
    canonical = prepare("ml-1m", tmp_path)
    first = contents(canonical)
    (canonical / "README").write_text("mine")
    prepare("ml-1m", tmp_path)
    assert contents(canonical) == first | {"README": b"mine"}
    assert json.loads((canonical / MARKER).read_text()) == {"command": "data_prep canonical"}


def test_canonical_and_raw_folders_from_before_owner_markers_are_taken_over(tmp_path, official_zip):
    archive = official_zip("ml-1m")
    fetch("ml-1m", tmp_path, source=str(archive), md5=md5_of(archive))
    canonical = prepare("ml-1m", tmp_path)
    for folder in (canonical, tmp_path / "ml-1m/raw"):
        (folder / MARKER).unlink()
        (folder / LOCK).unlink()
    before = contents(canonical)
    fetch("ml-1m", tmp_path, source=str(archive), md5=md5_of(archive))  # a local path is always copied afresh
    assert contents(prepare("ml-1m", tmp_path)) == before | {MARKER: b'{\n  "command": "data_prep canonical"\n}\n'}
    assert json.loads((tmp_path / "ml-1m/raw" / MARKER).read_text()) == {"command": "data_prep fetch"}


def test_refetch_replaces_only_its_own_container(tmp_path, official_zip, recbole_folder):
    archive = official_zip("ml-100k")
    raw = fetch("ml-100k", tmp_path, source=str(archive), md5=md5_of(archive))
    (raw / "notes.txt").write_text("mine")
    fetch("ml-100k", tmp_path, source=str(recbole_folder))  # zip → folder of RecBole files
    assert sorted(p.name for p in raw.iterdir()) == [LOCK, MARKER, "fetch.json", "files", "notes.txt"]
    fetch("ml-100k", tmp_path, source=str(archive), md5=md5_of(archive))  # and back
    assert sorted(p.name for p in raw.iterdir()) == [LOCK, MARKER, "fetch.json", "ml-100k.zip", "notes.txt"]
    assert pl.read_parquet(prepare("ml-100k", tmp_path) / "ratings.parquet").height == 6


def test_fetch_refuses_a_raw_folder_of_other_files(tmp_path, official_zip):
    raw = tmp_path / "ml-1m/raw"
    raw.mkdir(parents=True)
    (raw / "ml-1m.zip").write_bytes(b"my own download")
    archive = official_zip("ml-1m")
    with pytest.raises(DataPrepError, match=rf"--data-dir {raw}: expected a new or empty folder, or one written by "
                                            r"`data_prep fetch` before, found ml-1m.zip"):
        fetch("ml-1m", tmp_path, source=str(archive), md5=md5_of(archive))
    assert contents(raw) == {"ml-1m.zip": b"my own download"}
