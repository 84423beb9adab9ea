"""One student run from a single spec: train a genre student with one method, keep the best
validation epoch, and record its test RMSE."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from reckd import __version__
from reckd.data.augment import sample_unrated
from reckd.data.split import SplitData, load_split
from reckd.losses import Dims, HeadSpec, Teacher, get, make_config, split_spec
from reckd.models.ranker import Ranker, count_parameters
from reckd.train.io import write_array, write_json
from reckd.train.loop import Augmentation, NonFiniteLoss, fit, predict_rows, rmse
from reckd.train.plan import Run, clear_run
from reckd.train.teacher import TeacherRef, cached_teacher_outputs, load_teacher, ranker_features, teacher_outputs


class StudentRuns:
    """Everything the runs of one ``distill`` request share, built once per process: the split, the
    teacher's identity, the method configs; the frozen teacher, its output cache and each genre's
    augmentation pairs are made on first use (the planner never needs them)."""

    def __init__(self, data: SplitData, teacher: TeacherRef, config) -> None:
        self.data, self.ref, self.config = data, teacher, config
        self.method_configs = {name: make_config(name, config.options.get(name, {}))
                               for name, _ in map(split_spec, config.methods)}
        self.train_rows = {}
        self._teacher = self._cache = None
        self._augmentation: dict[str, Augmentation] = {}

    def rows(self, genre: str) -> int:
        if genre not in self.train_rows:
            self.train_rows[genre] = int(self.data.rows("train", genre).numel())
        return self.train_rows[genre]

    def config_of(self, run: Run) -> dict:
        """The run's full effective configuration (what ``config.json`` records and resume compares)."""
        name, aug = split_spec(run.method)
        method_config = self.method_configs[name]
        head = "levels" if get(name).head_for(method_config) == "levels" else self.config.model.head
        batch = max(self.config.min_batch, min(self.config.train.batch_size, self.rows(run.genre) // self.config.min_steps))
        return {"genre": run.genre, "method": run.method, "seed": run.seed,
                "method_config": dataclasses.asdict(method_config),
                "model": dataclasses.asdict(dataclasses.replace(self.config.model, head=head)),
                "train": dataclasses.asdict(dataclasses.replace(self.config.train, seed=run.seed, batch_size=batch)),
                "augment": self.config.augment if aug else 0, "aug_weight": self.config.aug_weight if aug else 0.0,
                "split_fingerprint": self.data.fingerprint, "teacher_sha256": self.ref.sha256,
                "reckd_version": __version__}

    @property
    def teacher(self) -> Ranker:
        if self._teacher is None:
            self._teacher = load_teacher(self.ref.path, self.data.rating.device)
        return self._teacher

    @property
    def cache(self):
        if self._cache is None:
            self._cache = cached_teacher_outputs(self.teacher, self.data, self.ref)
        return self._cache

    def augmentation(self, genre: str) -> Augmentation:
        if genre not in self._augmentation:
            asked = self.config.augment * self.rows(genre)
            users, items = sample_unrated(self.data, genre, asked, seed=self.data.genre_index(genre))
            if users.numel() < asked:
                print(f"reckd distill: {genre}: {users.numel()} unrated pairs exist, fewer than the "
                      f"{asked} that --augment {self.config.augment} asks for; using all of them", file=sys.stderr)
            rating = teacher_outputs(self.teacher, self.data, users, items).prediction
            self._augmentation[genre] = Augmentation(users, items, rating, self.config.augment, self.config.aug_weight)
        return self._augmentation[genre]

    def __call__(self, run: Run, out: Path) -> dict | str:
        """The run's result, or the message of a non-finite loss (the run is then left unfinished)."""
        try:
            return self.train(run, run.folder(out))
        except NonFiniteLoss as error:
            return f"{run.folder(out)}: {error}"

    def train(self, run: Run, run_dir: Path) -> dict:
        data, teacher = self.data, self.teacher
        config = self.config_of(run)
        name, aug = split_spec(run.method)
        augmentation = self.augmentation(run.genre) if aug else None
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run(run_dir)  # an interrupted (or --retrain-changed) run starts over
        method_class, method_config = get(name), self.method_configs[name]
        model_config = dataclasses.replace(self.config.model, head=config["model"]["head"])
        train_config = dataclasses.replace(self.config.train, seed=run.seed, batch_size=config["train"]["batch_size"])
        train_rows, val_rows, test_rows = (data.rows(s, run.genre) for s in ("train", "val", "test"))
        torch.manual_seed(run.seed)
        model = Ranker(model_config, ranker_features(data), data.levels, device=data.rating.device)
        method = method_class(method_config, Dims(*model.dims), Dims(*teacher.dims),
                              HeadSpec("rating", data.levels)).to(data.rating.device)
        teacher_fn = None
        if method_class.needs_teacher:
            live = method_class.needs_live_teacher
            method.prepare(teacher_outputs(teacher, data, data.user[train_rows], data.item[train_rows], lower=True)
                           if live else self.cache.index(train_rows), teacher.head_layer)
            if live:
                def teacher_fn(rows, batch):
                    with torch.no_grad():
                        outputs = teacher(batch.sparse_features)
                    return Teacher(outputs, upper=teacher.upper, head=teacher.head)
            else:
                cache = self.cache

                def teacher_fn(rows, batch):
                    return Teacher(cache.index(rows), upper=teacher.upper, head=teacher.head)
        write_json(run_dir / "config.json", config)
        result = fit(model, method, data, train_rows, val_rows, train_config, teacher_fn, augmentation, run_dir)
        predictions = predict_rows(model, method, data, test_rows)
        test = rmse(predictions, data.rating[test_rows])
        write_array(run_dir / "test_predictions.npy", predictions.cpu().numpy())  # in test-row order
        summary = {"genre": run.genre, "method": run.method, "seed": run.seed, "best_epoch": result.best_epoch,
                   "val_rmse": result.best_val_rmse, "test_rmse": test, "test_ratings": int(test_rows.numel()),
                   "train_ratings": int(train_rows.numel()), "epochs_run": result.epochs_run,
                   "seconds": result.seconds, "seconds_per_epoch": result.seconds / result.epochs_run,
                   "parameters": count_parameters(model),
                   "extra_parameters": sum(p.numel() for p in method.parameters()),
                   "augment_pairs": int(augmentation.users.numel()) if augmentation else 0}
        write_json(run_dir / "result.json", summary)
        return summary


def student_runs(split_dir: str, teacher: TeacherRef, config, threads: int) -> StudentRuns:
    """A worker process's StudentRuns (picklable recipe: the split is read again in the worker)."""
    torch.set_num_threads(threads)
    return StudentRuns(load_split(split_dir), teacher, config)
