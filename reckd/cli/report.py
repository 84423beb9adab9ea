"""``reckd report``: the per-genre RMSE table of a distill folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reckd.cli.flags import csv_list


def cmd_report(args: argparse.Namespace) -> None:
    from reckd.errors import ReckdError
    from reckd.report import collect, plot, render

    report = collect(Path(args.run_dir), list(args.methods) if args.methods else None, args.metric,
                     Path(args.baselines) if args.baselines else None)
    if report.missing:
        shown = ", ".join(f"{g}/{m}/seed{s}" for g, m, s in report.missing[:5])
        more = f" and {len(report.missing) - 5} more" if len(report.missing) > 5 else ""
        message = (f"{args.run_dir}: {len(report.missing)} requested run(s) not finished ({shown}{more}); "
                   f"cells with fewer seeds are marked n=k/K")
        if not args.allow_partial:
            raise ReckdError(f"{message}; finish them with the same `reckd distill` command, or pass "
                             f"--allow-partial to report what is finished")
        print(f"reckd report: warning: {message}", file=sys.stderr)
    print(render(report, args.format))
    if args.format == "table":
        teacher = report.teacher
        print(f"\n{report.metric} on each genre's test ratings, mean ± std over seeds "
              f"{','.join(map(str, report.seeds))}; each run reports the epoch with the best validation RMSE; "
              f"(%) = improvement over none; * / ** differs from none at p < 0.05 / 0.01, † beats the best "
              f"classical row (chosen per genre on validation) and ▲ / ▼ is better / worse than the teacher at "
              f"p < 0.05 (paired Wilcoxon over the test ratings). Teacher: {teacher['parameters']:,} parameters, overall test RMSE "
              f"{teacher['test_rmse']:.4f}.")
    if args.plot:
        plot(report, Path(args.plot))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the per-genre RMSE table of a distill folder")
    p.add_argument("run_dir")
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "markdown"])
    p.add_argument("--metric", default="rmse", help="the headline: rmse (default), ndcg@10, recall@10 or hr@10")
    p.add_argument("--baselines", help="a `reckd baselines --out` folder of the same split: classical reference columns")
    p.add_argument("--methods", type=csv_list, help="report only these methods, in this order (default: all, as run)")
    p.add_argument("--plot", help="also write a bar chart of the improvements to this PNG")
    p.add_argument("--allow-partial", action="store_true",
                   help="report a folder with unfinished runs (a warning, exit 0) instead of refusing it")
    p.set_defaults(func=cmd_report)
