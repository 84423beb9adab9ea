"""``reckd pretrain``, ``reckd ensemble``, ``reckd tune`` and ``reckd distill``: parse flags, call :mod:`reckd.train`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from reckd.cli.flags import (add_device, add_methods, add_model, add_train, csv_list, method_options, model_config,
                             scales, seeds, train_config)
from reckd.errors import ReckdError


def _load(split_dir: str, device: str, world=None, share: bool = False):
    """The split, on the device; with ``share`` under ``torchrun``, only this rank's share of the training
    ratings (what ``pretrain`` trains on)."""
    from reckd.data.split import load_split
    from reckd.train.device import resolve_device

    part = (world.rank, world.size) if share and world is not None else None
    return load_split(split_dir, part).to(world.device if world is not None else resolve_device(device))


def _world(device: str):
    """The ``torchrun`` world this process belongs to (None in a plain single-process run)."""
    from reckd.train.distributed import world_from_env

    return world_from_env(device)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from reckd.train.teacher import PretrainConfig, pretrain

    config = PretrainConfig(restarts=args.restarts or PretrainConfig().restarts,
                            combine=args.combine or PretrainConfig().combine, scale=scales(args),
                            embedding_optimizer=args.embedding_optimizer, sharding=args.sharding)
    config.model = model_config(args, config.model)
    config.train = dataclasses.replace(train_config(args, config.train), seed=args.seed)
    world = _world(args.device)
    data = _load(args.split_dir, args.device, world, share=True)
    summary = pretrain(data, Path(args.out), config,
                       on_epoch=lambda r: print(f"epoch {r['epoch']:3d}  val RMSE {r['val_rmse']:.4f}",
                                                file=sys.stderr, flush=True), retrain_changed=args.retrain_changed,
                       world=world)
    if world is not None and not world.main:
        return
    if summary.get("reused"):
        print(f"reckd pretrain: {args.out} holds a finished teacher with these options; reusing it", file=sys.stderr)
    kept = (f"mean of {config.restarts} restarts, best validation epochs {summary['best_epoch']}"
            if config.combine == "mean" else
            f"restart {summary['restart']} of {config.restarts}, best validation epoch {summary['best_epoch']}")
    print(f"teacher: test RMSE {summary['test_rmse']:.4f} on {summary['test_ratings']} ratings ({kept}, "
          f"val RMSE {summary['val_rmse']:.4f}, {summary['parameters']:,} parameters) -> {args.out}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from reckd.train.teacher import ensemble

    data = _load(args.split_dir, args.device)
    summary = ensemble(data, [Path(t) for t in args.teachers], Path(args.out), retrain_changed=args.retrain_changed)
    if summary.get("reused"):
        print(f"reckd ensemble: {args.out} holds this ensemble of these teachers; reusing it", file=sys.stderr)
    members = ", ".join(f"{m} {v:.4f}" for m, v in zip(summary["members"], summary["member_val_rmse"]))
    print(f"teacher: test RMSE {summary['test_rmse']:.4f} on {summary['test_ratings']} ratings (the mean of "
          f"{len(summary['best_epoch'])} rankers, val RMSE {summary['val_rmse']:.4f}; members' val RMSE: {members}; "
          f"{summary['parameters']:,} parameters) -> {args.out}")


def cmd_distill(args: argparse.Namespace) -> None:
    from reckd.train.distill import DistillConfig, distill

    config = DistillConfig(genres=args.genres, methods=args.methods, seeds=args.seeds, augment=args.augment,
                           options=method_options(args.set), scale=scales(args),
                           embedding_optimizer=args.embedding_optimizer, shard_students=args.shard_students)
    config.model = model_config(args, config.model)
    config.train = train_config(args, config.train)
    config.check()  # before the split is loaded
    world = _world(args.device)
    data = _load(args.split_dir, args.device, world)
    if args.tuned is not None:
        from reckd.train.tune import load_tuned

        config.tuned = load_tuned(args.tuned, data, Path(args.teacher), config)
    results = distill(data, Path(args.teacher), Path(args.out), config, progress=not args.quiet,
                      workers=args.workers, retrain_changed=args.retrain_changed, world=world)
    if world is None or world.main:
        print(f"{len(results)} runs finished -> {args.out}", file=sys.stderr)


def grid_flags(pairs: list[str]) -> dict[str, tuple[str, ...]]:
    """``--grid train.lr=1e-3,3e-3 --grid model.dropout=0,0.2`` -> ``{"train.lr": ("1e-3", "3e-3"), …}``;
    the library types and checks the values."""
    grid: dict[str, tuple[str, ...]] = {}
    for pair in pairs:
        key, eq, values = pair.partition("=")
        key = key.strip()
        if not (eq and key):
            raise ReckdError(f"--grid: expected KEY=V1,V2,… (e.g. train.lr=1e-3,3e-3), found {pair!r}")
        if key in grid:
            raise ReckdError(f"--grid: expected each key once, found {key} twice")
        grid[key] = csv_list(values)
    return grid


def cmd_tune(args: argparse.Namespace) -> None:
    from reckd.train.distill import DistillConfig
    from reckd.train.tune import DEFAULT_GRID, check_grid, render_tuned, tune

    config = DistillConfig(genres=args.genres, methods=args.methods, seeds=args.seeds, augment=args.augment,
                           options=method_options(args.set), scale=scales(args))
    config.model = model_config(args, config.model)
    config.train = train_config(args, config.train)
    grid = check_grid(grid_flags(args.grid) if args.grid else DEFAULT_GRID)
    config.check()  # before the split is loaded
    data = _load(args.split_dir, args.device)
    document = tune(data, Path(args.teacher), Path(args.out), config, grid, seeds=args.seeds, workers=args.workers,
                    progress=not args.quiet, retrain_changed=args.retrain_changed, choose=args.choose)
    print(render_tuned(document))
    print(f"-> {Path(args.out) / 'tuned.json'} (use: reckd distill … --tuned {Path(args.out) / 'tuned.json'})",
          file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train the all-genre teacher on a split")
    p.add_argument("split_dir")
    p.add_argument("--out", required=True, help="run folder for the teacher (new, empty, or an earlier teacher's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int, default=0,
                   help="starts from seeds SEED, SEED+1, …, combined by --combine (default: the config's)")
    p.add_argument("--combine", choices=("best", "mean"),
                   help="keep the start best on validation, or all of them as one ensemble predicting their mean "
                        "(default: the config's)")
    add_train(p, "teacher")
    add_model(p, "teacher")
    add_device(p)
    _embedding_optimizer_flag(p, "a teacher")
    from reckd.train.distributed import SHARDINGS

    p.add_argument("--sharding", choices=SHARDINGS, default="auto",
                   help="under torchrun: how the embedding tables are sharded (default auto: torchrec's planner "
                        "chooses)")
    p.add_argument("--retrain-changed", action="store_true",
                   help="train again when OUT holds a teacher made with other options (default: refuse)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("ensemble", help="combine finished teachers of a split into one: the mean of all their rankers")
    p.add_argument("split_dir")
    p.add_argument("--teachers", type=csv_list, required=True, metavar="T1,T2,…",
                   help="`reckd pretrain` (or `reckd ensemble`) folders trained on this split, two or more")
    p.add_argument("--out", required=True, help="folder for the ensemble teacher (new, empty, or an earlier ensemble's)")
    add_device(p)
    p.add_argument("--retrain-changed", action="store_true",
                   help="make it again when OUT holds an ensemble of other teachers (default: refuse)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("distill", help="train genre students, with and without distillation")
    _student_flags(p, "run folder (new, empty, or an earlier distill's: resumed)")
    add_methods(p, "none,kd")
    p.add_argument("--tuned", metavar="TUNE/tuned.json[,…]", type=csv_list,
                   help="train each run with the values `reckd tune` chose for its method and genre class (or "
                        "genre); several files, say a dense and a sparse tune, are merged")
    _embedding_optimizer_flag(p, "a student")
    p.add_argument("--shard-students", action="store_true",
                   help="under torchrun: train every run with all ranks together, the student sharded like the "
                        "teacher (default: each run on one rank)")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("tune", help="choose the students' hyper-parameters on validation (a grid of distill runs)",
                       description="Distil every grid point (each seed of --seeds) into OUT/point<k>/ and choose, "
                                   "per method and genre class, the point with the lowest mean validation RMSE "
                                   "over the class's genres and the seeds; writes OUT/tuned.json for "
                                   "`reckd distill --tuned`.")
    _student_flags(p, "tune folder (new, empty, or an earlier tune's: resumed)")
    add_methods(p, "none,kd", with_seeds=False)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,…",
                   help="values to search for one option, e.g. --grid train.lr=1e-3,3e-3, or a method's option, "
                        "e.g. --grid kd.w_task=0.1,0.3,0.9 (its runs only; repeatable; default "
                        "model.input_dropout=0,0.5 train.lr=3e-3 train.weight_decay=0,1e-3,1e-2,3e-2: 8 points)")
    p.add_argument("--seeds", type=seeds, default=(0,),
                   help="comma-separated seeds of every grid point, chosen on validation averaged over them "
                        "(default 0)")
    p.add_argument("--choose", choices=("class", "genre"), default="class",
                   help="choose per genre class on its macro validation RMSE (default), or per genre on its own")
    p.set_defaults(func=cmd_tune)


def _embedding_optimizer_flag(p: argparse.ArgumentParser, who: str) -> None:
    from reckd.train.distributed import EMBEDDING_OPTIMIZERS

    p.add_argument("--embedding-optimizer", choices=tuple(EMBEDDING_OPTIMIZERS), default="adam",
                   help=f"the embedding tables' optimiser (default adam; {who} sharded by torchrun on CPUs "
                        f"needs adagrad, which fbgemm's CPU kernels support)")


def _student_flags(p: argparse.ArgumentParser, out_help: str) -> None:
    """The flags of every command that trains students (distill, tune)."""
    p.add_argument("split_dir")
    p.add_argument("--teacher", required=True, help="the `reckd pretrain --out` folder (trained on this split)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--genres", default="all", help="all|dense|sparse|G1,G2,…")
    p.add_argument("--augment", type=int, default=16, help="unrated pairs per rated pair for NAME+aug (default 16)")
    add_train(p, "students")
    add_model(p, "students")
    add_device(p)
    p.add_argument("--workers", type=int,
                   help="students trained at once in worker processes (default: one per core on the CPU; on "
                        "CUDA one per core up to 8, sharing the GPU)")
    p.add_argument("--retrain-changed", action="store_true",
                   help="retrain runs that the folder holds with other options (default: refuse them)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
