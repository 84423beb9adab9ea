"""``reckd pretrain | distill | report | vision``: thin wrappers over the library.

Bad input (``ReckdError``, or data_prep's ``DataPrepError`` from the file helpers) prints
``reckd: error: …`` and exits 1; argparse's usage errors exit 2; anything else is a bug and keeps
its traceback. Under ``torchrun`` an error that every rank raised alike (``EveryRankError``) is printed
once, by rank 0; any other names its rank."""

from __future__ import annotations

import argparse
import os
import sys

from data_prep.errors import DataPrepError
from reckd.cli import baselines, report, train, vision
from reckd.errors import EveryRankError, ReckdError

COMMANDS = (train, report, baselines, vision)  # each module registers its subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reckd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ReckdError, DataPrepError) as error:
        rank = os.environ.get("RANK", "0") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "0"
        if rank == "0":
            print(f"reckd: error: {error}", file=sys.stderr)
        elif not isinstance(error, EveryRankError):  # one every rank raised alike is said once, by rank 0
            print(f"reckd: error (rank {rank}): {error}", file=sys.stderr)
        return 1
    finally:  # a torchrun rank leaves its process group cleanly
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def entry() -> None:
    """The ``reckd`` command (and ``python -m reckd``): :func:`main`, then exit with its status. A
    ``torchrun`` rank ends with ``os._exit`` once its output is flushed and its process group destroyed,
    skipping the interpreter's teardown: there gloo's worker threads may still free tensors that hold
    Python objects, and a thread taking the GIL during finalization aborts the process ("terminate called
    without an active exception", SIGABRT) after a run that succeeded — seen once in CI, at the end of a
    2-rank ``pretrain``."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
