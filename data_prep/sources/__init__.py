"""Stage 1, sources: a dataset's raw files under `DATA_DIR/DATASET/raw/`, from GroupLens (MD5-checked), the
PyPI mirror (SHA-256-checked) or a local archive or folder, and read access to them for the parse stage.

    >>> from data_prep.sources import fetch, RawFiles
    >>> raw = RawFiles.load(fetch("ml-100k"), "ml-100k")
"""
from data_prep.sources.raw import RawFiles, TextFile, fetch

__all__ = ["RawFiles", "TextFile", "fetch"]
