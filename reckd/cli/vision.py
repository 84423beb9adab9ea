"""``reckd vision``: the image-classification task (digits), a thin layer over :mod:`reckd.vision`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from reckd.cli.flags import csv_list, method_options, seeds
from reckd.train.io import write_with
from reckd.vision import VisionConfig, format_report, run

METHODS = "none,kd,fitnet,hybrid,dist,moe,talking"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``vision`` subcommand to ``reckd``'s parser."""
    defaults = VisionConfig()
    fit = defaults.student_fit
    p = subparsers.add_parser(
        "vision", help="distil a digits CNN teacher into small students (image classification heads)",
        description="Teacher pre-trained on all ten digits of scikit-learn's load_digits; students on "
                    "downstream tasks (a subset of the classes, few labels); prints test accuracy per "
                    "method, mean ± std over seeds, and the relative improvement over 'none'.")
    p.add_argument("--methods", type=csv_list, default=csv_list(METHODS), help=f"comma-separated, NAME or NAME+aug (default {METHODS})")
    p.add_argument("--seeds", type=seeds, default=(0, 1, 2), help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--task", action="append", dest="tasks", metavar="CLASSES:LABELS",
                   help=f"a downstream task, e.g. 0-4:10 or 1,3,5,7:20; repeatable (default {' '.join(defaults.tasks)})")
    p.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    p.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    p.add_argument("--epochs", type=int, default=fit.epochs, help="maximum student epochs")
    p.add_argument("--patience", type=int, default=fit.patience, help="early-stopping patience (epochs)")
    p.add_argument("--ema", type=float, default=fit.ema, metavar="DECAY",
                   help="validate and keep an exponential moving average of the students' weights, DECAY per step "
                        "(default 0: off)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
                   help="a method option, e.g. --set kd.tau=2; repeatable")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the models are tiny)")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    p.add_argument("--out", type=Path, help="also write the JSON report (summary, runs, effective configs) here")
    p.set_defaults(func=cmd_vision)


def cmd_vision(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    config = VisionConfig(
        tasks=tuple(args.tasks) if args.tasks else VisionConfig().tasks,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction,
        student_fit=dataclasses.replace(VisionConfig().student_fit, epochs=args.epochs, patience=args.patience,
                                        ema=args.ema))
    report = run(config, args.methods, args.seeds, args.device, method_options(args.set),
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(report, args.format))
    if args.out:
        write_with(args.out, lambda tmp: tmp.write_text(format_report(report, "json")))
