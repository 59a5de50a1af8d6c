"""Run independent per-item tasks: in-process, on a process pool, or on Dask distributed.

Ingest, de-identification and curation are embarrassingly parallel over files or series.
:func:`run_tasks` gives all of them the same three execution modes and a rich progress bar,
and never lets one failing item stop the batch: the exception comes back as a
:class:`TaskFailure` in that item's slot.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TaskFailure", "run_tasks", "progress_bar"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskFailure:
    """An item whose task raised. ``error`` is ``"ExceptionType: message"``."""

    index: int
    error: str
    traceback: str


def progress_bar(*, transient: bool = False, disable: bool = False) -> Progress:
    """The progress bar every long hidim job shows (description, bar, n/N, elapsed, ETA)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
        disable=disable,
    )


def _call(fn: Callable[[T], R], index: int, item: T) -> tuple[int, R | TaskFailure]:
    try:
        return index, fn(item)
    except Exception as exc:  # noqa: BLE001 - a batch records every failure and goes on
        return index, TaskFailure(index, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _iter_results(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    scheduler: str | None,
) -> Iterator[tuple[int, R | TaskFailure]]:
    if scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_as_completed

        with Client(scheduler) as client:
            futures = [client.submit(_call, fn, i, item, pure=False) for i, item in enumerate(items)]
            for fut in dask_as_completed(futures):
                yield fut.result()
        return
    if workers <= 1:
        for i, item in enumerate(items):
            yield _call(fn, i, item)
        return
    # forkserver, not fork: the parent runs a progress-bar thread (and maybe torch threads),
    # and forking a multi-threaded process can deadlock the child.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_call, fn, i, item) for i, item in enumerate(items)]
        for fut in as_completed(futures):
            yield fut.result()


def run_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    description: str = "working",
    show_progress: bool = True,
    on_result: Callable[[int, R | TaskFailure], None] | None = None,
) -> list[R | TaskFailure]:
    """Apply ``fn`` to every item and return results in input order.

    Args:
        fn: A picklable top-level function (or ``functools.partial`` of one) of one item.
        items: The work items (paths, series descriptors...).
        workers: Processes to use on this machine; ``1`` runs in-process.
        scheduler: A Dask distributed scheduler address (``tcp://host:8786``) or ``None``.
            When given, ``workers`` is ignored and the cluster does the work.
        description: Progress bar label.
        show_progress: Show a rich progress bar.
        on_result: Called in the parent process as each item finishes (e.g. to append
            to a ledger so an interrupted run can resume).

    Returns:
        One entry per item: ``fn``'s return value, or a :class:`TaskFailure`.
    """
    if workers < 1:
        from hidim.errors import ConfigError

        raise ConfigError(f"workers must be >= 1, got {workers}; pass --workers 1 or more")
    results: list[Any] = [None] * len(items)
    with progress_bar(disable=not show_progress) as progress:
        task = progress.add_task(description, total=len(items))
        for index, result in _iter_results(fn, items, workers, scheduler):
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            progress.advance(task)
    return results
