"""Train many students at once in CPU worker processes: no module state, and no orphans.

Each worker builds its own per-process state from a picklable recipe, then serves runs from a task
queue until it gets ``None``. Workers ask the kernel to kill them when their parent dies (Linux
``PR_SET_PDEATHSIG``), so a killed ``distill`` never leaves students training behind it.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import traceback
from typing import Any, Callable, Iterable, Iterator

import torch

from reckd.errors import ReckdError


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _serve(recipe: Callable[[], Callable[[Any], Any]], parent: int, tasks, results) -> None:
    _die_with_parent(parent)
    work = recipe()
    for task in iter(tasks.get, None):
        try:
            results.put((task, "ok", work(task)))
        except ReckdError as error:  # bad input found in a worker: the same message as in one process
            results.put((task, "refused", str(error)))
        except BaseException:
            results.put((task, "bug", traceback.format_exc()))


def run_in_workers(recipe: Callable[[], Callable[[Any], Any]], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
    """``recipe()`` (run once in each of ``workers`` processes) gives the function applied to each
    task; yields the outcomes as they finish. A task that raises stops everything with its traceback."""
    tasks = list(tasks)
    context = torch.multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    for task in tasks:
        todo.put(task)
    for _ in range(workers):
        todo.put(None)
    processes = [context.Process(target=_serve, args=(recipe, os.getpid(), todo, done), daemon=True)
                 for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        for _ in tasks:
            while True:
                try:
                    task, status, outcome = done.get(timeout=1.0)
                    break
                except queue.Empty:
                    dead = [p for p in processes if p.exitcode not in (None, 0)]
                    if dead:
                        raise ReckdError(f"a worker process ended with exit code {dead[0].exitcode} (out of "
                                         f"memory?); finished runs are kept, re-run the command to go on") from None
            if status == "refused":
                raise ReckdError(outcome)
            if status == "bug":
                raise RuntimeError(f"a worker failed on {task}:\n{outcome}")
            yield outcome
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
