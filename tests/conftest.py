"""Shared fixtures: a small synthetic MovieLens-like split, and a teacher pre-trained on it."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from data_prep.config import SplitConfig
from data_prep.split import split
from data_prep.synth import SynthConfig, synth


@contextlib.contextmanager
def _single_thread():
    """Tiny models: one intra-op thread is fastest (and avoids oversubscribing shared CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    with _single_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """:func:`one_thread` for a whole module (what its module-scoped fixtures train under too)."""
    with _single_thread():
        yield


@pytest.fixture(scope="session")
def synth_split(tmp_path_factory):
    """20k ratings, 300 users, 200 items, 6 genres, random 80/10/10 split."""
    root = tmp_path_factory.mktemp("data")
    synth(SynthConfig(ratings=20_000, users=300, items=200, genres=6, seed=0), name="synth", data_dir=root)
    out = root / "split"
    split("synth", out, data_dir=root, config=SplitConfig(seed=0, min_test_ratings=20))
    return out


@pytest.fixture(scope="session")
def synth_data(synth_split):
    from reckd.data.split import load_split

    return load_split(synth_split)


@pytest.fixture(scope="session")
def synth_teacher(synth_data, tmp_path_factory):
    """A teacher pre-trained briefly on the synthetic split (its run folder and summary)."""
    from reckd.train.teacher import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("teacher")
    config = PretrainConfig()
    config.train = dataclasses.replace(config.train, epochs=8, batch_size=512, lr=3e-3)
    config.restarts = 1
    summary = pretrain(synth_data, out, config)
    return out, summary
