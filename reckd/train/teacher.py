"""Pre-train the all-genre teacher, load it frozen, and cache its outputs on a split."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import torch
from torch import Tensor

from data_prep.folder import claim
from reckd import __version__
from reckd.data.split import SplitData
from reckd.errors import ReckdError
from reckd.losses import Dims, HeadSpec, Outputs, get, make_config
from reckd.models.ensemble import Ensemble
from reckd.models.ranker import Ranker, RankerConfig, count_parameters
from reckd.train.io import read_json, write_json, write_torch
from reckd.train.loop import FitResult, TrainConfig, clear_last, fit, pair_scorer, predict_rows, rmse, scaled
from reckd.train.plan import differences, normal

if TYPE_CHECKING:
    from reckd.train.distributed import World
from reckd.train.ranking import ranking_metrics


@dataclass
class PretrainConfig:
    """The teacher's architecture and optimisation (chosen on validation RMSE only).
    ``restarts``: train this many times from seeds ``seed, seed+1, …``; ``combine``: keep the start
    with the best validation RMSE (``best``) or all of them as one :class:`Ensemble` predicting their
    mean (``mean``; with one start, that start). ``scale``: beyond 1M training ratings the batch and
    learning rate grow with the set (:func:`reckd.train.loop.scaled`; the CLI turns it off when
    ``--batch-size`` or ``--lr`` is given); ``config.json`` records the values trained with.
    ``embedding_optimizer``: ``adam`` (everything) or ``adagrad`` for the embedding tables (what a sharded
    teacher on CPUs needs); ``sharding``: how ``torchrun`` shards the tables (``auto``: torchrec's
    planner chooses; :data:`reckd.train.distributed.SHARDINGS`)."""

    model: RankerConfig = field(default_factory=RankerConfig.teacher)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=60, batch_size=1024, lr=1e-3, weight_decay=1e-3, patience=10, seed=0))
    restarts: int = 5
    combine: Literal["best", "mean"] = "mean"
    scale: bool = True
    embedding_optimizer: Literal["adam", "adagrad"] = "adam"
    sharding: str = "auto"

    def __post_init__(self) -> None:
        if self.restarts < 1:
            raise ReckdError(f"--restarts: expected at least 1, found {self.restarts}")
        if self.combine not in ("best", "mean"):
            raise ReckdError(f"--combine: expected 'best' or 'mean', found {self.combine!r}")
        from reckd.train.distributed import SHARDINGS, check_embedding_optimizer

        check_embedding_optimizer(self.embedding_optimizer)
        if self.sharding not in SHARDINGS:
            raise ReckdError(f"--sharding: expected one of {', '.join(SHARDINGS)}, found {self.sharding!r}")


def is_ensemble(combine: str, restarts: int) -> bool:
    """Whether the teacher of these options is an :class:`Ensemble`: the mean of more than one start
    (the mean of one start is that start)."""
    return combine == "mean" and restarts > 1


def ranker_features(data: SplitData) -> list[tuple[str, int]]:
    return [(f.name, f.cardinality) for f in data.features]


def pretrain(data: SplitData, out: Path, config: PretrainConfig | None = None,
             on_epoch=None, retrain_changed: bool = False, world: World | None = None) -> dict:
    """Train the teacher on the training ratings of every genre except the holdout genres; early
    stopping on the validation ratings of the same genres. Writes ``out/``: ``config.json``,
    ``restart<k>/metrics.jsonl`` and ``restart<k>/checkpoint.pt`` per start, ``checkpoint.pt`` (the
    teacher: the best start's best epoch, or the ensemble) and ``result.json`` (overall and per-genre
    RMSE). A folder holding a finished teacher of the same configuration is reused as it is (its
    result returned, ``reused: True``); one of another configuration is an error naming the keys that
    differ, unless ``retrain_changed``.

    ``world`` (under ``torchrun``): every start is sharded over the ranks
    (:func:`reckd.train.distributed.shard`), each rank training on its share of the training ratings —
    ``data`` loaded with ``load_split(part=(rank, size))``, or the whole split, of which it takes that
    share. Every rank then holds the unsharded teacher and scores a share of the genres
    (:func:`deal_genres`); rank 0 holds the folder, writes the files and the result, which every rank
    returns. Each start's best epoch is also kept sharded (``restart<k>/checkpoint/``,
    :func:`reckd.train.distributed.load_sharded` reads it in one process)."""
    config = config or PretrainConfig()
    if config.scale:
        rows = int(data.rows("train", teacher_only=True).numel())
        rows = sum(world.all_objects(rows)) if world is not None and data.partial else rows
        config = dataclasses.replace(config, train=scaled(config.train, rows))
    if world is not None:
        world.check_batch(config.train.batch_size)  # before the folder is claimed
        world.agree("the split's fingerprint", data.fingerprint)
    requested = normal(_recorded_config(data, config, world))
    with contextlib.ExitStack() as stack:
        if world is None:
            out = stack.enter_context(claim(out, "reckd pretrain"))
            reused = _reusable(out, requested, retrain_changed)
        else:  # rank 0 holds the folder and decides; its errors stop every rank
            out = world.from_main(lambda: stack.enter_context(claim(out, "reckd pretrain")))
            reused = world.from_main(lambda: _reusable(out, requested, retrain_changed))
        if reused is not None:
            return reused
        return _pretrain(data, out, config, requested, on_epoch, world)


def _reusable(out: Path, requested: dict, retrain_changed: bool) -> dict | None:
    """The result of a finished teacher in ``out`` made with the requested options (None: train one)."""
    recorded = _recorded(out, requested)
    if (out / "result.json").is_file() and recorded is not None:
        if recorded == requested:
            return {**read_json(out / "result.json", "the teacher's result"), "reused": True}
        if not retrain_changed:
            raise ReckdError(f"{out}: holds a teacher made with other options than requested: "
                             f"{'; '.join(differences(recorded, requested))}; use a new --out, or "
                             f"--retrain-changed to train this one again")
    return None


def _recorded_config(data: SplitData, config: PretrainConfig, world: World | None = None) -> dict:
    """What ``config.json`` records: the teacher's whole configuration and the split it learns. The
    embedding optimiser, world size and sharding are recorded only when not the defaults (adam, one
    process), so teachers made before those options stay reusable."""
    return {"model": dataclasses.asdict(config.model), "train": config.train.recorded(),
            "restarts": config.restarts, "combine": config.combine, "split": str(data.path),
            "split_fingerprint": data.fingerprint, "features": ranker_features(data), "levels": list(data.levels),
            "reckd_version": __version__,
            **({"embedding_optimizer": config.embedding_optimizer} if config.embedding_optimizer != "adam" else {}),
            **({"world_size": world.size, "sharding": config.sharding} if world is not None else {})}


def _recorded(out: Path, requested: dict) -> dict | None:
    """``out/config.json`` (None if absent), its split path taken from ``requested``: the split is known
    by its fingerprint, not by where it lies."""
    if not (out / "config.json").is_file():
        return None
    return {**read_json(out / "config.json", "the teacher's config"), "split": requested["split"]}


def _pretrain(data: SplitData, out: Path, config: PretrainConfig, recorded: dict, on_epoch,
              world: World | None = None) -> dict:
    """Train (or resume) the starts, then :func:`_finish`. A start that finished before under the same
    options (``restart<k>/start.json``) is not trained again: its best epoch is read back from
    ``restart<k>/checkpoint.pt``, or, under ``torchrun``, from its sharded checkpoint — refused when
    made with another plan, world size or model. A start interrupted mid-way goes on after its last
    epoch (``restart<k>/last.pt``, :func:`reckd.train.loop.train`'s ``resumable``)."""
    fingerprint = data.fingerprint
    main = world is None or world.main
    resume = (_recorded(out, recorded) if world is None else world.from_main(lambda: _recorded(out, recorded))) == recorded
    if main:
        (out / "result.json").unlink(missing_ok=True)  # the folder is a finished teacher only once result.json is back
        write_json(out / "config.json", recorded)
    head = HeadSpec("rating", data.levels)
    train_rows, val_rows = _own_rows(data, world), data.rows("val", teacher_only=True)
    starts, plans = [], []
    for restart in range(config.restarts):
        train = dataclasses.replace(config.train, seed=config.train.seed + restart)
        run_dir = out / f"restart{restart}"
        finished = resume and (run_dir / "start.json").is_file()
        if main and not finished:
            run_dir.mkdir(exist_ok=True)
            (run_dir / "start.json").unlink(missing_ok=True)
            if not resume:  # epochs of other options: start over (the same options go on from the last epoch)
                (run_dir / "metrics.jsonl").unlink(missing_ok=True)
                clear_last(run_dir)
        if world is not None:
            finished = world.from_main(lambda: finished)
            world.barrier()
        torch.manual_seed(train.seed)  # the same initial weights on every rank
        model = Ranker(config.model, ranker_features(data), data.levels, device=data.rating.device)
        trained = model
        if world is not None:
            from reckd.train.distributed import describe, full_state, load_sharded, shard

            trained = shard(model, world, config.embedding_optimizer, train.lr, train.weight_decay, config.sharding)
            plans.append(describe(trained, world)["plan"])
        if finished:
            result = FitResult(**read_json(run_dir / "start.json", "a finished start"), state={})
            if world is None:
                model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
            else:  # rank 0 reads the weights for every rank; all stop if they are from another plan or world
                expected = describe(trained, world)
                model.load_state_dict(world.from_main(lambda: load_sharded(run_dir / "checkpoint", expected)))
            starts.append((result, model))
            continue
        none = get("none")(make_config("none"), Dims(*model.dims), Dims(*model.dims), head)
        result = fit(trained, none, data, train_rows, val_rows, train, run_dir=run_dir, on_epoch=on_epoch,
                     world=world, embedding_optimizer=config.embedding_optimizer, resumable=True)
        if world is not None:  # the unsharded best epoch, on every rank
            state = full_state(trained, world)
            model.load_state_dict(world.from_main(lambda: state))
        if main:
            write_json(run_dir / "start.json", {"best_epoch": result.best_epoch, "best_val": result.best_val,
                                                "epochs_run": result.epochs_run, "seconds": result.seconds})
            clear_last(run_dir)  # the start is done: its training state is no longer needed
        starts.append((result, model))
    teacher = _combine(data, config, starts)
    if world is None:
        return _finish(data, out, config, starts, teacher, genre_rmse(teacher[0], data), fingerprint, plans)
    # the genres' scores, a share of the genres on each rank, ranking against every rank's training pairs
    seen = torch.sort(world.gather(data.train_pairs())).values
    scored = world.all_objects(genre_rmse(teacher[0], data, seen, deal_genres(data, world.size)[world.rank]))
    genres = {genre: part[genre] for genre in data.genres for part in scored if genre in part}
    return world.from_main(lambda: _finish(data, out, config, starts, teacher, genres, fingerprint, plans))


def deal_genres(data: SplitData, ranks: int) -> list[list[str]]:
    """The genres dealt over ``ranks`` for scoring, each rank about as many movies to rank (full ranking,
    a fixed number of users times the genre's movies, is most of the work): the largest genre first, each
    to the rank with the fewest so far. At 25M ratings Drama alone holds 39% of the movie-genre pairs,
    and dealing every second genre left one rank 62% of them."""
    movies = data.item_genre.sum(0).tolist()
    shares: list[list[str]] = [[] for _ in range(ranks)]
    load = [0] * ranks
    for genre in sorted(range(len(data.genres)), key=lambda g: (-movies[g], g)):
        rank = load.index(min(load))
        shares[rank].append(data.genres[genre])
        load[rank] += movies[genre]
    return shares


def _own_rows(data: SplitData, world: World | None) -> Tensor:
    """The teacher's training rows that this process trains on: all of them, or under ``world`` this
    rank's share (``data`` holding just that share, or the whole split)."""
    rows = data.rows("train", teacher_only=True)
    if world is None or data.part == (world.rank, world.size):
        return rows
    if data.partial:
        raise ValueError(f"pretrain: data holds share {data.part} of the training ratings, expected share "
                         f"{(world.rank, world.size)} (this rank's) or the whole split")
    return world.share(rows)


def _combine(data: SplitData, config: PretrainConfig, starts: list) -> tuple[Ranker | Ensemble, int | None, float]:
    """The teacher made of the starts: the ensemble of all (``restart`` None), or the start with the best
    validation RMSE; and that teacher's validation RMSE."""
    if is_ensemble(config.combine, config.restarts):
        model = Ensemble([m for _, m in starts])
        val_rows = data.rows("val", teacher_only=True)
        return model, None, rmse(predict_rows(model, None, data, val_rows), data.rating[val_rows])
    restart = min(range(len(starts)), key=lambda k: starts[k][0].best_val_rmse)
    return starts[restart][1], restart, starts[restart][0].best_val_rmse


def _finish(data: SplitData, out: Path, config: PretrainConfig, starts: list, teacher: tuple, genres: dict,
            fingerprint: str, plans: list[dict]) -> dict:
    """Score the teacher (:func:`_combine`) and write ``checkpoint.pt`` and ``result.json``; ``genres``:
    its :func:`genre_rmse`."""
    model, restart, val = teacher
    epochs = [r.best_epoch for r, _ in starts] if restart is None else starts[restart][0].best_epoch
    return _write_teacher(data, out, model, val, epochs, genres, {
        "restart": restart,
        "combine": config.combine,
        "split_fingerprint": fingerprint,
        "seed": config.train.seed + (restart or 0),
        "restart_val_rmse": [r.best_val_rmse for r, _ in starts],
        "epochs_run": sum(r.epochs_run for r, _ in starts) if restart is None else starts[restart][0].epochs_run,
        "seconds": sum(r.seconds for r, _ in starts),
        **({"sharding": plans[0]} if plans else {}),
    })


def _write_teacher(data: SplitData, out: Path, model: Ranker | Ensemble, val: float, epochs, genres: dict,
                   fields: dict) -> dict:
    """Write a finished teacher: ``checkpoint.pt`` (its weights, best epochs, validation RMSE), then
    ``result.json`` (``fields``, its validation and test RMSE, size and per-genre scores ``genres``)."""
    test_rows = data.rows("test", teacher_only=True)
    summary = {**fields, "best_epoch": epochs, "val_rmse": val,
               "test_rmse": rmse(predict_rows(model, None, data, test_rows), data.rating[test_rows]),
               "test_ratings": int(test_rows.numel()), "parameters": count_parameters(model), "genres": genres}
    write_torch(out / "checkpoint.pt", {"model": model.state_dict(), "epoch": epochs, "val_rmse": val})
    write_json(out / "result.json", summary)
    return summary


def ensemble(data: SplitData, members: Sequence[Path], out: Path, retrain_changed: bool = False) -> dict:
    """One teacher made of finished teachers of this split (``reckd pretrain`` or ``reckd ensemble``
    folders): the mean of every ranker they hold, each weighted alike — an :class:`Ensemble`, written to
    ``out`` as ``pretrain`` writes a teacher (``config.json``, ``checkpoint.pt``, ``result.json``), so
    ``distill``, ``tune`` and ``report`` take it as any other. Members of different architectures and
    training options are what it is for: their errors differ more than those of restarts of one.

    Each member must be a finished teacher of ``data``'s split (:func:`teacher_ref`). ``config.json``
    records each member's folder and checkpoint SHA-256 and every ranker's model: a finished ensemble
    of the same members is reused, one of others refused (naming what differs) unless
    ``retrain_changed``."""
    if len(members) < 2:
        raise ReckdError(f"--teachers: expected at least two teacher folders, found {len(members)}")
    refs = [teacher_ref(Path(member), data) for member in members]
    for k, ref in enumerate(refs):
        twin = next((r for r in refs[:k] if r.sha256 == ref.sha256), None)
        if twin is not None:
            raise ReckdError(f"--teachers: {twin.path} and {ref.path} hold the same teacher (checkpoint SHA-256 "
                             f"{ref.sha256[:12]}…); an ensemble of one model twice is that model")
    models = [RankerConfig(**m) for ref in refs for m in ranker_configs(read_json(ref.path / "config.json"))]
    heads = sorted({m.head for m in models})
    if len(heads) > 1:
        raise ReckdError(f"--teachers: expected members with one kind of head, found {', '.join(heads)}")
    requested = normal({
        "members": [{"teacher": str(ref.path), "teacher_sha256": ref.sha256} for ref in refs],
        "models": [dataclasses.asdict(m) for m in models], "combine": "mean", "restarts": len(models),
        "split": str(data.path), "split_fingerprint": data.fingerprint, "features": ranker_features(data),
        "levels": list(data.levels), "reckd_version": __version__})
    with claim(out, "reckd ensemble", flag="--out") as out:
        reused = _reusable(out, requested, retrain_changed)
        if reused is not None:
            return reused
        loaded = [load_teacher(ref.path, data.rating.device) for ref in refs]
        rankers = [(ref.path, k, r) for ref, m in zip(refs, loaded)
                   for k, r in enumerate(m.members if isinstance(m, Ensemble) else [m])]
        _refuse_twins(rankers)
        (out / "result.json").unlink(missing_ok=True)
        write_json(out / "config.json", requested)
        model = Ensemble([r for _, _, r in rankers])
        model.eval()
        val_rows = data.rows("val", teacher_only=True)
        val = rmse(predict_rows(model, None, data, val_rows), data.rating[val_rows])
        results = [ref.result for ref in refs]
        epochs = [e for r in results for e in (r["best_epoch"] if isinstance(r["best_epoch"], list) else [r["best_epoch"]])]
        return _write_teacher(data, out, model, val, epochs, genre_rmse(model, data), {
            "restart": None, "combine": "mean", "split_fingerprint": data.fingerprint,
            "members": [str(ref.path) for ref in refs], "member_val_rmse": [r["val_rmse"] for r in results],
            "member_test_rmse": [r["test_rmse"] for r in results],
            "epochs_run": sum(r["epochs_run"] for r in results), "seconds": sum(r["seconds"] for r in results)})


def _refuse_twins(rankers: list[tuple[Path, int, Ranker]]) -> None:
    """Refuse an ensemble that would hold one ranker twice (``(member folder, ranker index, ranker)``):
    e.g. a one-start teacher and a 5-start one of the same options and seed share their first start,
    which would then weigh double."""
    seen: dict[str, tuple[Path, int]] = {}
    for path, k, ranker in rankers:
        digest = hashlib.sha256()
        for name, tensor in sorted(ranker.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        twin = seen.setdefault(digest.hexdigest(), (path, k))
        if twin != (path, k):
            raise ReckdError(f"--teachers: ranker {twin[1]} of {twin[0]} and ranker {k} of {path} have the same "
                             f"weights (the same options and seed); the ensemble would weigh that ranker twice")


def genre_rmse(model: Ranker, data: SplitData, seen: Tensor | None = None,
               genres: list[str] | None = None) -> dict[str, dict]:
    """Test RMSE, test-rating count and ranking metrics (NDCG/Recall/HR@10) of a model on each genre (of
    ``genres``: default all) with test ratings; ``seen``: see :func:`reckd.train.ranking.ranking_metrics`."""
    seen = data.train_pairs() if seen is None and not data.partial else seen  # once for every genre
    out = {}
    for genre in data.genres if genres is None else genres:
        rows = data.rows("test", genre)
        if rows.numel():
            out[genre] = {"test_rmse": rmse(predict_rows(model, None, data, rows), data.rating[rows]),
                          "test_ratings": int(rows.numel()),
                          **ranking_metrics(pair_scorer(model, None, data), data, genre, seen=seen)}
    return out


@dataclass(frozen=True)
class TeacherRef:
    """A finished teacher folder, identified by content: the SHA-256 of its checkpoint and the
    fingerprint of the split it was trained on."""

    path: Path
    sha256: str
    split_fingerprint: str
    result: dict


def teacher_ref(teacher_dir: Path, data: SplitData | None = None) -> TeacherRef:
    """Check that ``teacher_dir`` holds a finished teacher and, with ``data``, that it was trained on that
    very split (same fingerprint): a teacher from another split has seen its test ratings."""
    teacher_dir = Path(teacher_dir)
    if not (teacher_dir / "result.json").is_file():
        raise ReckdError(f"--teacher {teacher_dir}: expected a finished `reckd pretrain --out` folder, found no "
                         f"result.json; run `reckd pretrain` first")
    config = read_json(teacher_dir / "config.json", "the teacher's config")
    recorded = config.get("split_fingerprint")
    if recorded is None:
        raise ReckdError(f"{teacher_dir / 'config.json'}: expected the fingerprint of the teacher's split, found "
                         f"none (made before reckd 0.2); re-run `reckd pretrain`")
    if data is not None and recorded != data.fingerprint:
        raise ReckdError(f"--teacher {teacher_dir}: trained on split {recorded} ({config.get('split')}), but "
                         f"{data.path} is split {data.fingerprint}; a teacher from another split has seen its "
                         f"held-out ratings — pre-train a teacher on {data.path}")
    try:
        digest = hashlib.sha256((teacher_dir / "checkpoint.pt").read_bytes()).hexdigest()
    except OSError as error:
        raise ReckdError(f"{teacher_dir / 'checkpoint.pt'}: expected the teacher's checkpoint, {error.strerror}") from None
    return TeacherRef(teacher_dir, digest, recorded, read_json(teacher_dir / "result.json", "the teacher's result"))


def ranker_configs(config: dict) -> list[dict]:
    """The model of each ranker that a teacher's ``config.json`` describes: one per ``models`` entry
    (``reckd ensemble``), ``restarts`` of its ``model`` (the mean of the starts), or one (the best)."""
    if "models" in config:
        return config["models"]
    return [config["model"]] * (config["restarts"] if is_ensemble(config.get("combine", "best"), config["restarts"]) else 1)


def teacher_model(config: dict, device: torch.device | str) -> Ranker | Ensemble:
    """An untrained teacher of the shape that a teacher's ``config.json`` describes (:func:`ranker_configs`:
    one ranker, or an :class:`Ensemble` of several), to load its checkpoint into."""
    features, levels = [tuple(f) for f in config["features"]], config["levels"]
    rankers = [Ranker(RankerConfig(**m), features, levels, device=device) for m in ranker_configs(config)]
    return Ensemble(rankers) if len(rankers) > 1 else rankers[0]


def _describe(config: dict) -> str:
    """The architecture a teacher's ``config.json`` describes, in words (for errors)."""
    kinds = sorted({f"arch {m['arch']}, bias {m['bias']}, embedding_dim {m['embedding_dim']}, hidden {list(m['hidden'])}"
                    for m in ranker_configs(config)})
    if "models" in config:
        return f"{'; '.join(kinds)}; the mean of {len(config['models'])} rankers"
    return f"{kinds[0]}, combine {config.get('combine', 'best')} of {config['restarts']} restarts"


def load_teacher(run_dir: Path, device: torch.device | str = "cpu") -> Ranker | Ensemble:
    """The best-epoch teacher, frozen: eval mode, ``requires_grad=False`` everywhere."""
    run_dir = Path(run_dir)
    if not (run_dir / "result.json").is_file():
        raise ReckdError(f"{run_dir / 'result.json'}: missing; run `reckd pretrain` first")
    config = read_json(run_dir / "config.json")
    model = teacher_model(config, device)
    state = torch.load(run_dir / "checkpoint.pt", map_location=device, weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # missing, unexpected or mis-shaped tensors: another architecture
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise ReckdError(f"{run_dir / 'checkpoint.pt'}: expected the weights of the architecture that "
                         f"{run_dir / 'config.json'} describes ({_describe(config)}), found another: {first}") from None
    model.eval()
    model.requires_grad_(False)
    return model


@torch.no_grad()
def teacher_outputs(teacher: Ranker, data: SplitData, users: Tensor, items: Tensor, lower: bool = False,
                    upper: bool = True, chunk: int = 65536) -> Outputs:
    """The frozen teacher's prediction on (user, item) pairs; its higher state t_h only with ``upper``
    and its lower state t_l only with ``lower`` (no cached method uses it; Talking Models runs the teacher
    live) — empty [N, 0] otherwise. Each chunk keeps only what is asked for: at 25M rows the states
    left out are 6.5 GB (t_h) and 26 GB (t_l), and a slice of a chunk's state would keep all of it."""
    predictions, lowers, uppers = [], [], []
    for start in range(0, users.numel(), chunk):
        out = teacher(data.batch(users[start:start + chunk], items[start:start + chunk]).sparse_features)
        predictions.append(out.prediction)
        if lower:
            lowers.append(out.lower)
        if upper:
            uppers.append(out.upper)
    prediction = torch.cat(predictions)
    empty = prediction.new_zeros(len(prediction), 0)
    return Outputs(prediction, torch.cat(lowers) if lower else empty, torch.cat(uppers) if upper else empty, None)


def cached_teacher_outputs(teacher: Ranker | Ensemble, data: SplitData, ref: TeacherRef,
                           states: bool = True) -> Outputs:
    """Teacher outputs on every rating row of the split, computed once and stored as
    ``TEACHER/cache.pt``, keyed by the checkpoint's content and the split's fingerprint: the prediction
    (float32) always, the higher state t_h only with ``states`` (for the methods that read it), in
    float16 — it is read as float32 by :meth:`Outputs.index`, and the rounding (relative error ≤ 2⁻¹¹ per
    value) is far below the spread between seeds. A cache without t_h serves requests without
    ``states``; one made from another checkpoint or split, one lacking t_h when it is asked for, or one
    that cannot be read is rebuilt (with a message)."""
    path = ref.path / "cache.pt"
    key = {"format": 3, "teacher_sha256": ref.sha256, "split_fingerprint": data.fingerprint,
           "rows": int(data.rating.numel())}
    if path.is_file():
        try:
            cached = torch.load(path, map_location=data.rating.device, weights_only=True)
            if cached["key"] == key and (cached["upper"] is not None or not states):
                return _cached(cached["prediction"], cached["upper"] if states else None)
            reason = ("made from another teacher checkpoint or split" if cached["key"] != key else
                      "without the teacher's states t_h, which a requested method reads")
        except Exception as error:  # a truncated or foreign file: never trusted, rebuilt
            reason = f"unreadable ({type(error).__name__})"
        print(f"reckd: {path}: {reason}; rebuilding the teacher-output cache", file=sys.stderr)
    out = teacher_outputs(teacher, data, data.user, data.item, upper=states)
    upper = out.upper.half() if states else None
    write_torch(path, {"key": key, "prediction": out.prediction.cpu(),
                       "upper": upper.cpu() if upper is not None else None})
    return _cached(out.prediction, upper)


def _cached(prediction: Tensor, upper: Tensor | None) -> Outputs:
    empty = prediction.new_zeros(len(prediction), 0)
    return Outputs(prediction, empty, empty if upper is None else upper, None)
