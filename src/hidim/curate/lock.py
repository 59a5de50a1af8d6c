"""A lock file so that two ``curate`` runs never write the same store at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hidim.errors import CurationError

__all__ = ["LOCK_NAME", "store_lock"]

LOCK_NAME = ".curate.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def store_lock(store_dir: Path) -> Iterator[None]:
    """Hold ``STORE/.curate.lock`` (pid inside) for the duration; stale locks are taken over.

    Raises:
        CurationError: another live process holds the lock.
    """
    path = Path(store_dir) / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise CurationError(
                    f"expected no other curation writing {store_dir}, but process {pid} holds "
                    f"{LOCK_NAME}; wait for it to finish (or delete the file if that process is gone)"
                ) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:  # pragma: no cover - lost a race twice
        raise CurationError(f"could not take the lock {path}; retry")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
