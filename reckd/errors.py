"""The one exception reckd raises for bad input or a run it must refuse; the CLI turns it (and data_prep's
DataPrepError, which reckd's file helpers raise) into ``reckd: error: …`` and exit code 1. Every other
exception is a bug and keeps its traceback."""

from __future__ import annotations


class ReckdError(Exception):
    """Bad input or a refused run: the message names the file, flag or run, what was expected and what
    was found, and how to proceed where there is a choice."""


class EveryRankError(ReckdError):
    """A refusal that every rank of a ``torchrun`` world makes alike (rank 0's decision, broadcast, or a
    check of values every rank shares): the CLI prints it once, from rank 0, instead of once per rank."""


class OptionError(ReckdError, ValueError):
    """A bad option value (a flag, a ``--set`` option, a config field); a ValueError to library callers."""


class UnknownName(ReckdError, KeyError):
    """An unknown method, option or genre name; a KeyError to library callers (printed without quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
