"""Generate a phantom: DICOM files, ``labels.csv`` and ``truth.json`` in one folder.

Layout of ``OUT``::

    dicom/<PatientID>/<StudyDate>_<Accession>/<NN>_<VIEW>.dcm   one study per patient
    ood/<kind>/...                                                only with the OOD effect
    labels.csv                                                    what `hidim labels import` reads
    truth.json                                                    every parameter + per-series truth
    run.json                                                      provenance

(Folder names carry PHI on purpose, as hospital exports do: de-identification must not copy
them.) Generation streams patients in chunks through :func:`hidim.parallel.run_tasks`; each
chunk writes its files and a truth fragment, so pixels are never held for more than one
series per worker, an interrupted run resumes where it stopped, and the output is the same
bytes for the same config whatever the number of workers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hidim.errors import PhantomError
from hidim.parallel import TaskFailure, progress_bar, run_tasks
from hidim.phantom.cohort import PatientRecord, sample_cohort
from hidim.phantom.config import PhantomConfig
from hidim.phantom.ood import write_ood
from hidim.phantom.outputs import LABEL_COLUMNS, summary, write_outputs
from hidim.phantom.study import layout_for, write_study
from hidim.provenance import atomic_write_text, write_run_json

__all__ = ["PhantomResult", "generate", "LABEL_COLUMNS", "layout_for"]

_WORK = ".hidim-phantom"
_WAVE_PATIENTS = 4096
_CHUNK_PATIENTS = 8


@dataclass(frozen=True)
class PhantomResult:
    """What :func:`generate` wrote.

    Attributes:
        out_dir: The phantom folder.
        n_patients: Patients written (with all their series).
        n_series: Cine loops written.
        n_ood_files: OOD DICOM files written.
        failures: ``"patients a..b: error"`` for every chunk that failed (their patients are
            left out of labels.csv and truth.json).
        seconds: Wall time of this call.
        resumed_chunks: Chunks found complete from an interrupted run and skipped.
        summary: Cohort counts for display (patients per site, label prevalence, events,
            planted effects).
        reused: ``out_dir`` already held this exact phantom; nothing was regenerated.
    """

    out_dir: Path
    n_patients: int
    n_series: int
    n_ood_files: int
    seconds: float
    failures: list[str] = field(default_factory=list)
    resumed_chunks: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    @property
    def dicom_dir(self) -> Path:
        """Folder with the cohort's DICOM files."""
        return self.out_dir / "dicom"

    @property
    def ood_dir(self) -> Path:
        """Folder with the OOD inputs (exists only with the OOD effect)."""
        return self.out_dir / "ood"

    @property
    def labels_path(self) -> Path:
        """``labels.csv``."""
        return self.out_dir / "labels.csv"

    @property
    def truth_path(self) -> Path:
        """``truth.json``."""
        return self.out_dir / "truth.json"

    @property
    def patients_per_second(self) -> float:
        """Throughput of this call."""
        return self.n_patients / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Chunk:
    config: PhantomConfig
    index: int
    records: tuple[PatientRecord, ...]
    out_dir: str


def _run_chunk(chunk: _Chunk) -> dict[str, Any]:
    """Render and write one chunk of patients, then its truth fragment (top-level: picklable)."""
    start = time.perf_counter()
    out = Path(chunk.out_dir)
    layout = layout_for(chunk.config)
    series: list[dict[str, Any]] = []
    for rec in chunk.records:
        series.extend(write_study(rec, chunk.config, layout, out))
    part = out / _WORK / "parts" / f"chunk-{chunk.index:07d}.json"
    atomic_write_text(part, json.dumps(series, separators=(",", ":")))
    return {"chunk": chunk.index, "series": len(series), "seconds": time.perf_counter() - start}


def _prepare(out: Path, config: PhantomConfig, overwrite: bool) -> dict[str, Any] | None:
    """Check ``out``; return the saved state of a finished identical phantom, else ``None``."""
    state_path = out / _WORK / "state.json"
    if out.exists() and not out.is_dir():
        raise PhantomError(f"expected a folder for the phantom, got the file {str(out)!r}")
    if out.is_dir() and any(out.iterdir()):
        if not state_path.is_file():
            raise PhantomError(
                f"{str(out)!r} is not empty and holds no phantom; choose an empty or new folder"
            )
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("fingerprint") != config.fingerprint():
            if not overwrite:
                raise PhantomError(
                    f"{str(out)!r} holds a phantom made with a different configuration; "
                    "choose a new folder or pass overwrite=True (--overwrite)"
                )
            for name in ("dicom", "ood", _WORK):
                shutil.rmtree(out / name, ignore_errors=True)
            for name in ("labels.csv", "truth.json", "run.json"):
                (out / name).unlink(missing_ok=True)
        elif state.get("complete"):
            return dict(state)
    atomic_write_text(
        state_path, json.dumps({"fingerprint": config.fingerprint(), "complete": False})
    )
    return None


def generate(
    out_dir: str | os.PathLike[str],
    config: PhantomConfig | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    show_progress: bool = False,
    overwrite: bool = False,
) -> PhantomResult:
    """Generate a phantom into ``out_dir``.

    Args:
        out_dir: Output folder (created; must be empty, or hold a phantom of the same config
            to resume / re-use it).
        config: The phantom's configuration (default: 50 patients, seed 0, no effects).
        workers: Processes on this machine.
        scheduler: Dask distributed scheduler address, or ``None``.
        show_progress: Show a rich progress bar.
        overwrite: Replace a phantom of a *different* config in ``out_dir``.

    Returns:
        What was written; ``failures`` lists chunks that failed (the run goes on).

    Raises:
        PhantomError: ``out_dir`` is a file, holds something other than a phantom, or holds
            a phantom of a different configuration (without ``overwrite``).
    """
    config = config or PhantomConfig()
    start = time.perf_counter()
    out = Path(out_dir)
    finished = _prepare(out, config, overwrite)
    if finished is not None:
        return PhantomResult(
            out_dir=out,
            n_patients=int(finished["n_patients"]),
            n_series=int(finished["n_series"]),
            n_ood_files=int(finished["n_ood_files"]),
            seconds=time.perf_counter() - start,
            resumed_chunks=int(finished["n_chunks"]),
            summary=dict(finished.get("summary", {})),
            reused=True,
        )
    cohort = sample_cohort(config)
    layout = layout_for(config)
    n = len(cohort)
    chunk_size = _CHUNK_PATIENTS  # fixed: fragments stay valid when workers change
    n_chunks = -(-n // chunk_size)
    parts = out / _WORK / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    done = {c for c in range(n_chunks) if (parts / f"chunk-{c:07d}.json").is_file()}
    resumed = len(done)
    failures: list[str] = []
    with progress_bar(disable=not show_progress) as progress:
        task = progress.add_task("phantom patients", total=n)
        progress.advance(task, sum(min(chunk_size, n - c * chunk_size) for c in done))
        todo = [c for c in range(n_chunks) if c not in done]
        per_wave = max(1, _WAVE_PATIENTS // chunk_size)
        for w in range(0, len(todo), per_wave):
            wave = todo[w : w + per_wave]
            items = [
                _Chunk(
                    config,
                    c,
                    tuple(cohort.records(c * chunk_size, (c + 1) * chunk_size)),
                    str(out),
                )
                for c in wave
            ]

            def on_result(k: int, res: Any, items: list[_Chunk] = items) -> None:
                progress.advance(task, len(items[k].records))
                if isinstance(res, TaskFailure):
                    first = items[k].records[0].index
                    failures.append(
                        f"patients {first}..{first + len(items[k].records) - 1}: {res.error}"
                    )
                else:
                    done.add(items[k].index)

            run_tasks(
                _run_chunk,
                items,
                workers=workers,
                scheduler=scheduler,
                show_progress=False,
                on_result=on_result,
            )
    ood: list[dict[str, Any]] = []
    if config.effects.ood:
        ood = write_ood(out / "ood", config, layout)
    n_ok, n_series = write_outputs(
        out,
        config,
        cohort,
        layout,
        parts=parts,
        done_chunks=sorted(done),
        chunk_size=chunk_size,
        ood=ood,
    )
    n_ood_files = sum(len(e["files"]) for e in ood)
    cohort_summary = summary(config, cohort)
    seconds = time.perf_counter() - start
    write_run_json(
        out,
        command="phantom",
        config=config,
        seed=config.seed,
        extra={
            "patients": n_ok,
            "series": n_series,
            "ood_files": n_ood_files,
            "failures": failures,
            "seconds": round(seconds, 3),
            "workers": workers,
        },
    )
    if not failures:
        shutil.rmtree(parts, ignore_errors=True)
        atomic_write_text(
            out / _WORK / "state.json",
            json.dumps(
                {
                    "fingerprint": config.fingerprint(),
                    "complete": True,
                    "n_patients": n_ok,
                    "n_series": n_series,
                    "n_ood_files": n_ood_files,
                    "n_chunks": n_chunks,
                    "summary": cohort_summary,
                }
            ),
        )
    return PhantomResult(
        out_dir=out,
        n_patients=n_ok,
        n_series=n_series,
        n_ood_files=n_ood_files,
        seconds=seconds,
        failures=failures,
        resumed_chunks=resumed,
        summary=cohort_summary,
    )
