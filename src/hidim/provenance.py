"""Provenance: every command writes ``run.json`` beside its outputs.

``run.json`` holds the resolved configuration, package versions, the git revision of the
hidim checkout (when there is one), the seed, and content hashes of the inputs, so that a
result can be traced and reproduced.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
    "git_revision",
    "package_versions",
    "write_run_json",
    "read_run_json",
]

_TRACKED_PACKAGES = (
    "hidim",
    "torch",
    "torchvision",
    "numpy",
    "pydicom",
    "zarr",
    "pyarrow",
    "pandas",
    "monai",
    "lightning",
    "captum",
    "fairlearn",
    "scikit-learn",
    "scikit-survival",
    "lifelines",
    "optuna",
    "flwr",
)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    A reader never sees a half-written file; a crash leaves either the old file or none.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks (memory-bounded)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def git_revision(start: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the hidim source tree (or ``start``), or ``None`` outside a checkout."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None


def package_versions(names: Iterable[str] = _TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape results (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(mode="json"))
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def write_run_json(
    out_dir: str | os.PathLike[str],
    *,
    command: str,
    config: Mapping[str, Any] | Any | None = None,
    seed: int | None = None,
    input_hashes: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``run.json`` into ``out_dir`` (atomically) and return its path.

    Args:
        out_dir: The command's output directory.
        command: The command that produced the outputs (e.g. ``"curate"``).
        config: The resolved configuration (a mapping or a pydantic model).
        seed: The random seed used, if any.
        input_hashes: ``{input name: sha256}``; never raw patient paths when the input may
            carry PHI — callers pass pseudonymous keys.
        extra: Anything else worth recording (counts, timings).
    """
    record = {
        "command": command,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": _jsonable(config) if config is not None else {},
        "seed": seed,
        "input_hashes": dict(input_hashes or {}),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "extra": _jsonable(extra or {}),
    }
    return atomic_write_text(Path(out_dir) / "run.json", json.dumps(record, indent=2, sort_keys=True))


def read_run_json(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run directory's ``run.json``."""
    path = Path(run_dir) / "run.json"
    from hidim.errors import HidimError

    if not path.is_file():
        raise HidimError(
            f"expected a run directory with run.json, got {str(path.parent)!r} without it; "
            "pass the --out folder of a hidim command"
        )
    return json.loads(path.read_text(encoding="utf-8"))
