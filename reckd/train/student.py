"""One student run from a single spec: train a genre student with one method, keep the best
validation epoch, and record its test RMSE."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from reckd import __version__
from reckd.data.augment import sample_unrated
from reckd.data.split import SplitData, load_split
from reckd.errors import ReckdError
from reckd.losses import Dims, HeadSpec, get, make_config, names, split_spec
from reckd.models.ranker import Ranker, RankerConfig, count_parameters
from reckd.train.io import write_array, write_json, write_torch
from reckd.train.loop import (Augmentation, NonFiniteLoss, TeacherView, TrainConfig, fit, pair_scorer, predict_rows,
                              rmse, scaled)
from reckd.train.plan import Run, clear_run
from reckd.train.ranking import ranking_metrics
from reckd.train.teacher import TeacherRef, cached_teacher_outputs, load_teacher, ranker_features, teacher_outputs

if TYPE_CHECKING:
    from reckd.train.distributed import World

# The hyper-parameters that ``reckd tune`` may search and a tuned file may set, as SECTION.FIELD of the
# run's ``train`` (TrainConfig) or ``model`` (RankerConfig): the type, and the range in words. Left out:
# the seed (the run's), the head (the method's) and the hidden widths (the student's size is fixed).
# Besides these, METHOD.OPTION — a numeric option of a method's Config, say ``kd.w_task`` — is tunable
# for that method's runs (``kd`` and ``kd+aug``), checked as ``--set`` checks it.
TUNABLE: dict[str, tuple[type, Callable[[float], bool], str]] = {
    "train.lr": (float, lambda v: 0 < v < math.inf, "a finite learning rate > 0"),
    "train.weight_decay": (float, lambda v: 0 <= v < math.inf, "a finite weight decay >= 0"),
    "train.epochs": (int, lambda v: v >= 1, "at least 1 epoch"),
    "train.patience": (int, lambda v: v >= 1, "at least 1 epoch"),
    "train.lr_patience": (int, lambda v: v >= 0, "0 (never) or more epochs"),
    "train.ema": (float, lambda v: 0 <= v < 1, "a decay in [0, 1) (0: off)"),
    "train.batch_size": (int, lambda v: v >= 1, "at least 1 rating"),
    "model.embedding_dim": (int, lambda v: v >= 1, "at least 1"),
    "model.dropout": (float, lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "model.input_dropout": (float, lambda v: 0 <= v < 1, "a probability in [0, 1)"),
}
_SECTIONS = {"train": TrainConfig, "model": RankerConfig}


def tuned_value(key: str, value: object, flag: str) -> int | float:
    """``value`` (a number, or its text from the command line) as the type of ``key``, checked for range;
    an error names ``flag``, the key, what was expected and what was found."""
    section, _, name = key.partition(".")
    if section in names():
        return _method_value(section, name, value, f"{flag} {key}")
    if section not in _SECTIONS or name not in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
        raise ReckdError(f"{flag}: expected a key among {', '.join(TUNABLE)} or METHOD.OPTION (a numeric "
                         f"option of one of {', '.join(names())}), found {key!r}")
    if key not in TUNABLE:
        raise ReckdError(f"{flag}: {key} is not tunable (the seed is the run's, the head the method's, the "
                         f"hidden widths the student's); expected one of {', '.join(TUNABLE)}")
    kind, in_range, expected = TUNABLE[key]
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if kind is int:
            if not number.is_integer():
                raise ValueError
            number = int(number)
    except (TypeError, ValueError):
        raise ReckdError(f"{flag} {key}: expected {'an integer' if kind is int else 'a number'}, "
                         f"found {value!r}") from None
    if not in_range(number):
        raise ReckdError(f"{flag} {key}: expected {expected}, found {value!r}")
    return number


def _method_value(method: str, option: str, value: object, where: str) -> int | float:
    """A numeric option of ``method``'s Config, coerced and range-checked by :func:`make_config`."""
    known = {f.name: f.default for f in dataclasses.fields(get(method).Config)}
    numeric = sorted(k for k, v in known.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if option not in numeric:
        raise ReckdError(f"{where}: expected a numeric option of {method!r} ({', '.join(numeric) or 'it has none'}), "
                         f"found {option!r}")
    if isinstance(value, bool):
        raise ReckdError(f"{where}: expected a number, found {value!r}")
    try:
        return getattr(make_config(method, {option: value}), option)
    except (KeyError, ValueError, TypeError) as error:
        raise ReckdError(f"{where}: {error.args[0] if error.args else error}") from None


def method_keys(values: dict[str, object]) -> dict[str, dict[str, object]]:
    """The METHOD.OPTION keys of tuned ``values``, as ``{method: {option: value}}`` (``--set``'s shape)."""
    options: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section not in _SECTIONS:
            options.setdefault(section, {})[name] = value
    return options


def apply_tuned(model: RankerConfig, train: TrainConfig, values: dict[str, object],
                flag: str = "--tuned") -> tuple[RankerConfig, TrainConfig]:
    """``model`` and ``train`` with the ``train.``/``model.`` keys of ``values`` (``{"train.lr": 1e-3,
    "model.dropout": 0.1}``) in place; METHOD.OPTION keys are the method's (:func:`method_keys`)."""
    changes: dict[str, dict] = {"model": {}, "train": {}}
    for key, value in values.items():
        section, _, name = key.partition(".")
        value = tuned_value(key, value, flag)
        if section in changes:
            changes[section][name] = value
    return dataclasses.replace(model, **changes["model"]), dataclasses.replace(train, **changes["train"])


class StudentRuns:
    """Everything the runs of one ``distill`` request share, built once per process: the split, the
    teacher's identity, the method configs; the frozen teacher, its output cache and each genre's
    augmentation pairs are made on first use (the planner never needs them), and shared with the other
    requests of one process (:meth:`sharing`). ``world``: every run is
    trained by all its ranks together (``distill --shard-students`` under ``torchrun``)."""

    def __init__(self, data: SplitData, teacher: TeacherRef, config, world: World | None = None) -> None:
        self.data, self.ref, self.config, self.world = data, teacher, config, world
        self.method_configs = {name: make_config(name, config.options.get(name, {}))
                               for name, _ in map(split_spec, config.methods)}
        self._made: dict[tuple, object] = {}  # what only the split and teacher decide, made on first use

    def sharing(self, config) -> StudentRuns:
        """The runs of another request (``reckd tune``'s next grid point) of the same split and teacher,
        sharing what this one has made: the teacher, its output cache, the augmentation pairs."""
        other = StudentRuns(self.data, self.ref, config, self.world)
        other._made = self._made
        return other

    def _once(self, key: tuple, make: Callable[[], object]):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def rows(self, genre: str) -> int:
        return self._once(("rows", genre), lambda: int(self.data.rows("train", genre).numel()))

    def tuned(self, run: Run) -> dict[str, object]:
        """The tuned values for the run's method spec and genre — chosen for the genre itself (``reckd tune
        --choose genre``) or else for its class (``{}`` when the request is untuned); a method or class
        that the tuned file lacks is an error naming it."""
        if not self.config.tuned:
            return {}
        genre_class = self.data.manifest["genres"][run.genre]["class"]
        by_class = self.config.tuned.get(run.method)
        if by_class is None:
            raise ReckdError(f"--tuned: expected tuned values for method {run.method!r}, found only "
                             f"{', '.join(map(repr, self.config.tuned)) or 'none'}; run `reckd tune` with it in --methods")
        scope = run.genre if run.genre in by_class else genre_class
        if scope not in by_class:
            raise ReckdError(f"--tuned: expected tuned values for {run.method!r} on {genre_class} genres "
                             f"({run.genre} is {genre_class}), found only {', '.join(by_class) or 'none'}; run "
                             f"`reckd tune` with {run.genre!r} or another {genre_class} genre in --genres")
        where = f"--tuned ({run.method}, {scope})"
        name = split_spec(run.method)[0]
        values = {key: tuned_value(key, value, where) for key, value in by_class[scope].items()}
        for other in method_keys(values).keys() - {name}:
            raise ReckdError(f"{where}: expected options of {name!r} only, found {other!r}'s")
        return values

    def config_of(self, run: Run) -> dict:
        """The run's full effective configuration (what ``config.json`` records, resume compares and
        :meth:`train` trains with): the request's model and training options, the tuned values of the
        run's method and genre class (also under ``tuned``), the method's head and the genre's batch."""
        name, aug = split_spec(run.method)
        tuned = self.tuned(run)
        # tuned method options over the request's --set
        method_config = dataclasses.replace(self.method_configs[name], **method_keys(tuned).get(name, {}))
        model, train = apply_tuned(self.config.model, self.config.train, tuned)
        if self.config.scale and "train.batch_size" not in tuned:
            train = scaled(train, self.rows(run.genre), lr="train.lr" not in tuned)
        head = "levels" if get(name).head_for(method_config) == "levels" else model.head
        # the requested batch at most; a small genre's shrinks to take min_steps steps, but not below min_batch
        batch = min(train.batch_size, max(self.config.min_batch, self.rows(run.genre) // self.config.min_steps))
        if self.world is not None:  # a global batch that the ranks share evenly
            batch = max(self.world.size, batch - batch % self.world.size)
        config = {"genre": run.genre, "method": run.method, "seed": run.seed,
                  "method_config": dataclasses.asdict(method_config),
                  "model": dataclasses.asdict(dataclasses.replace(model, head=head)),
                  "train": dataclasses.replace(train, seed=run.seed, batch_size=batch).recorded(),
                  "augment": self.config.augment if aug else 0, "aug_weight": self.config.aug_weight if aug else 0.0,
                  "split_fingerprint": self.data.fingerprint, "teacher_sha256": self.ref.sha256,
                  "reckd_version": __version__}
        if self.config.tuned:  # absent when untuned, so folders from before tuning existed still resume
            config["tuned"] = tuned
        if self.config.embedding_optimizer != "adam":  # recorded as the teacher's: only when not the default
            config["embedding_optimizer"] = self.config.embedding_optimizer
        if self.world is not None:
            config["world_size"] = self.world.size
        return config

    @property
    def teacher(self) -> Ranker:
        return self._once(("teacher",), lambda: load_teacher(self.ref.path, self.data.rating.device))

    @property
    def reads_states(self) -> bool:
        """Whether a method of this request reads the teacher's states (its cache then holds them)."""
        return any(get(name).reads_teacher_states for name in self.method_configs)

    @property
    def cache(self):
        states = self.reads_states
        return self._once(("cache", states),
                          lambda: cached_teacher_outputs(self.teacher, self.data, self.ref, states=states))

    def augmentation(self, genre: str) -> Augmentation:
        augment, weight = self.config.augment, self.config.aug_weight
        return self._once(("augmentation", genre, augment, weight), lambda: self._augment(genre, augment, weight))

    def _augment(self, genre: str, augment: int, weight: float) -> Augmentation:
        asked = augment * self.rows(genre)
        users, items = sample_unrated(self.data, genre, asked, seed=self.data.genre_index(genre))
        if users.numel() < asked and (self.world is None or self.world.main):  # said once
            print(f"reckd distill: {genre}: {users.numel()} unrated pairs exist, fewer than the "
                  f"{asked} that --augment {augment} asks for; using all of them", file=sys.stderr)
        rating = teacher_outputs(self.teacher, self.data, users, items, upper=False).prediction
        return Augmentation(users, items, rating, augment, weight)

    def __call__(self, run: Run, out: Path) -> dict | str:
        """The run's result, or the message of a non-finite loss (the run is then left unfinished)."""
        try:
            return self.train(run, run.folder(out))
        except NonFiniteLoss as error:
            return f"{run.folder(out)}: {error}"

    def train(self, run: Run, run_dir: Path) -> dict:
        """Train the run into ``run_dir`` and write its result. Under ``world``, the student is sharded
        over the ranks (:func:`reckd.train.distributed.shard`), each rank training on its share of the
        genre's training ratings; the method's extras start from rank 0's (prepared on its share) and their
        gradients are averaged over the ranks. Rank 0 writes the folder as one process would — the
        gathered ``checkpoint.pt`` included — and every rank returns its result."""
        data, teacher, world = self.data, self.teacher, self.world
        main = world is None or world.main
        config = self.config_of(run)
        name, aug = split_spec(run.method)
        augmentation = self.augmentation(run.genre) if aug else None
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            clear_run(run_dir)  # an interrupted (or --retrain-changed) run starts over
        if world is not None:
            world.barrier()
        method_class = get(name)
        method_config = method_class.Config(**config["method_config"])
        # exactly what config.json records: one source of truth for the run's model and training options
        model_config = RankerConfig(**config["model"])
        train_config = TrainConfig(**config["train"])
        train_rows, val_rows = data.rows("train", run.genre), data.rows("val", run.genre)
        torch.manual_seed(run.seed)
        model = Ranker(model_config, ranker_features(data), data.levels, device=data.rating.device)
        method = method_class(method_config, Dims(*model.dims), Dims(*teacher.dims),
                              HeadSpec("rating", data.levels)).to(data.rating.device)
        view = TeacherView(teacher, None if method_class.needs_live_teacher else self.cache,
                           head=teacher.head_layer) if method_class.needs_teacher else None
        embedding_optimizer = self.config.embedding_optimizer
        if main:
            write_json(run_dir / "config.json", config)
        if world is None:
            result = fit(model, method, data, train_rows, val_rows, train_config, view, augmentation, run_dir,
                         embedding_optimizer=embedding_optimizer)
            return self._finish(run, run_dir, model, method, result, augmentation)
        from reckd.train.distributed import full_state, shard

        sharded = shard(model, world, embedding_optimizer, train_config.lr, train_config.weight_decay)
        result = fit(sharded, method, data, world.share(train_rows), val_rows, train_config, view, augmentation,
                     run_dir, world=world, embedding_optimizer=embedding_optimizer)
        state = full_state(sharded, world)  # the best epoch, unsharded, on rank 0

        def finish() -> dict:
            model.load_state_dict(state)
            write_torch(run_dir / "checkpoint.pt", {"model": state, "method": method.state_dict(),
                                                    "epoch": result.best_epoch, "val_rmse": result.best_val})
            shutil.rmtree(run_dir / "checkpoint")  # the sharded copy: checkpoint.pt is what one process reads
            return self._finish(run, run_dir, model, method, result, augmentation)

        return world.from_main(finish)

    def _finish(self, run: Run, run_dir: Path, model: Ranker, method, result, augmentation) -> dict:
        """Score the trained student on the genre's test ratings and write its predictions and result."""
        data = self.data
        test_rows = data.rows("test", run.genre)
        predictions = predict_rows(model, method, data, test_rows)
        test = rmse(predictions, data.rating[test_rows])
        write_array(run_dir / "test_predictions.npy", predictions.cpu().numpy())  # in test-row order
        ranking = ranking_metrics(pair_scorer(model, method, data), data, run.genre)
        summary = {"genre": run.genre, "method": run.method, "seed": run.seed, "best_epoch": result.best_epoch,
                   "val_rmse": result.best_val_rmse, "test_rmse": test, "test_ratings": int(test_rows.numel()),
                   "train_ratings": self.rows(run.genre), "epochs_run": result.epochs_run,
                   "seconds": result.seconds, "seconds_per_epoch": result.seconds / result.epochs_run,
                   "parameters": count_parameters(model),
                   "extra_parameters": sum(p.numel() for p in method.parameters()),
                   "augment_pairs": int(augmentation.users.numel()) if augmentation else 0, **ranking}
        write_json(run_dir / "result.json", summary)
        return summary


def student_runs(split_dir: str, device: str, teacher: TeacherRef, config, threads: int) -> StudentRuns:
    """A worker process's StudentRuns (picklable recipe: the split is read again in the worker, onto
    ``device``)."""
    torch.set_num_threads(threads)
    return StudentRuns(load_split(split_dir).to(torch.device(device)), teacher, config)
