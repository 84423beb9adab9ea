"""data_prep: MovieLens (or synthetic) → canonical parquet → genre-shift splits with manifest.json.

The package is cut by stage; a module imports only from its own stage or those to its left
(tests/data_prep/test_data_prep_layers.py checks it):

    shared      errors, atomic (the one writer), folder (claim: one writer per output folder), paths, datasets
    sources/    fetch: a dataset's raw files under DATA_DIR/DATASET/raw/, verified (GroupLens, PyPI mirror, local)
    parse/      parse_raw: each layout's files → Tables, every row keeping its file line for errors
    canonical   the schema and its checks; prepare: parsed tables → DATA_DIR/DATASET/canonical/ (synth: the same)
    splits      config (SplitConfig), assign (split codes), genres (classes), fingerprint, split, manifest (info)
    interface   api (the library calls), cli

The library API is `data_prep.api` (fetch, prepare, split, synth, info); the CLI is `data_prep.cli`. The
functions are not re-exported here, so that `data_prep.split` and `data_prep.synth` stay the modules of
those names, which reckd and its tests import.
"""
from data_prep.errors import DataPrepError

__all__ = ["DataPrepError"]
