"""``reckd pretrain | distill | report | vision``: thin wrappers over the library."""

from __future__ import annotations

import argparse
import os
import dataclasses
import sys
from pathlib import Path

import torch

from reckd.train.device import resolve_device


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, found {text!r}") from None


def _options(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``--set kd.tau=2 --set talking.rounds=2`` -> ``{"kd": {"tau": "2"}, "talking": {"rounds": "2"}}``."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        method, dot, option = key.partition(".")
        if not (eq and dot and method and option):
            raise SystemExit(f"reckd: error: --set: expected METHOD.OPTION=VALUE, found {pair!r}")
        options.setdefault(method, {})[option] = value
    return options


def _load(split_dir: str, device: torch.device):
    from reckd.data.split import load_split

    return load_split(split_dir).to(device)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from reckd.train.teacher import PretrainConfig, pretrain

    device = resolve_device(args.device)
    config = PretrainConfig()
    config.train = dataclasses.replace(config.train, seed=args.seed, epochs=args.epochs or config.train.epochs)
    config.restarts = args.restarts or config.restarts
    data = _load(args.split_dir, device)
    summary = pretrain(data, Path(args.out), config,
                       on_epoch=lambda r: print(f"epoch {r['epoch']:3d}  val RMSE {r['val_rmse']:.4f}",
                                                file=sys.stderr, flush=True))
    print(f"teacher: test RMSE {summary['test_rmse']:.4f} on {summary['test_ratings']} ratings "
          f"(restart {summary['restart']} of {config.restarts}, best validation epoch {summary['best_epoch']}, "
          f"val RMSE {summary['val_rmse']:.4f}, "
          f"{summary['parameters']:,} parameters) -> {args.out}")


def cmd_distill(args: argparse.Namespace) -> None:
    from reckd.train.distill import DistillConfig, distill

    device = resolve_device(args.device)
    config = DistillConfig(genres=args.genres, methods=_csv(args.methods), seeds=args.seeds,
                           augment=args.augment, options=_options(args.set))
    if args.epochs:
        config.train = dataclasses.replace(config.train, epochs=args.epochs)
    data = _load(args.split_dir, device)
    workers = args.workers or (os.cpu_count() or 1 if device.type == "cpu" else 1)
    results = distill(data, Path(args.teacher), Path(args.out), config, progress=not args.quiet, workers=workers)
    print(f"{len(results)} runs finished -> {args.out}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    from reckd.report import collect, plot, render

    rows, methods, teacher = collect(Path(args.run_dir), list(_csv(args.methods)) if args.methods else None)
    print(render(rows, methods, args.format))
    if args.format == "table":
        print(f"\nRMSE on each genre's test ratings, mean ± std over seeds; each run reports the epoch with the "
              f"best validation RMSE; (%) = improvement over none. Teacher: {teacher['parameters']:,} parameters, "
              f"overall test RMSE {teacher['test_rmse']:.4f}.")
    if args.plot:
        plot(rows, methods, Path(args.plot))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reckd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train the all-genre teacher on a split")
    p.add_argument("split_dir")
    p.add_argument("--out", required=True, help="run folder for the teacher")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int, default=0,
                   help="starts from seeds SEED, SEED+1, …; the best on validation is kept (default: 2)")
    p.add_argument("--epochs", type=int, default=0, help="maximum epochs (default: the config's)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("distill", help="train genre students, with and without distillation")
    p.add_argument("split_dir")
    p.add_argument("--teacher", required=True, help="the `reckd pretrain --out` folder")
    p.add_argument("--out", required=True)
    p.add_argument("--genres", default="all", help="all|dense|sparse|G1,G2,…")
    p.add_argument("--methods", default="none,kd", help="comma list of methods, each optionally NAME+aug")
    p.add_argument("--seeds", type=_seeds, default=(0, 1, 2))
    p.add_argument("--augment", type=int, default=4, help="unrated pairs per rated pair for NAME+aug")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
                   help="override a method option, e.g. --set kd.tau=2 (repeatable)")
    p.add_argument("--epochs", type=int, default=0, help="maximum epochs (default: the config's)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--workers", type=int, default=0,
                   help="students trained at once in CPU processes (default: one per core on the CPU, 1 on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("report", help="the per-genre RMSE table of a distill folder")
    p.add_argument("run_dir")
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "markdown"])
    p.add_argument("--methods", help="report only these methods, in this order (default: all, as run)")
    p.add_argument("--plot", help="also write a bar chart of the improvements to this PNG")
    p.set_defaults(func=cmd_report)

    from reckd.cli import vision  # imported here: it reuses this module's flag parsers

    vision.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"reckd: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
