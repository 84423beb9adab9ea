"""``reckd pretrain | distill | report | vision``: thin wrappers over the library.

Bad input (``ReckdError``, or data_prep's ``DataPrepError`` from the file helpers) prints
``reckd: error: …`` and exits 1; argparse's usage errors exit 2; anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import argparse
import sys

from data_prep.errors import DataPrepError
from reckd.cli import baselines, report, train, vision
from reckd.errors import ReckdError

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
        print(f"reckd: error: {error}", file=sys.stderr)
        return 1
    finally:  # a torchrun rank leaves its process group cleanly
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
