"""data_prep: MovieLens (or synthetic) → canonical parquet → genre-shift splits with manifest.json.

The library API is `data_prep.api` (fetch, prepare, split, synth, info); the CLI is `data_prep.cli`.
The functions are not re-exported here, so that `data_prep.split` etc. stay the modules of those names.
"""
from data_prep.errors import DataPrepError

__all__ = ["DataPrepError"]
