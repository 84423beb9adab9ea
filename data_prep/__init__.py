"""data_prep: MovieLens (or synthetic) → canonical parquet → genre-shift splits with manifest.json."""
from data_prep.api import fetch, info, prepare, split, synth
from data_prep.errors import DataPrepError

__all__ = ["DataPrepError", "fetch", "info", "prepare", "split", "synth"]
