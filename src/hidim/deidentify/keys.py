"""The project key: the secret that makes pseudonyms and UID remapping keyed and consistent.

Every site that shares the key file maps the same patient ID, name or UID to the same
pseudonym; without the key the mapping cannot be recomputed or brute-forced from a guessed
name. The key is 32 random bytes stored as 64 hex characters in a file readable only by its
owner (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from hidim.errors import DeidentificationError

__all__ = ["KEY_BYTES", "create_key", "load_key"]

KEY_BYTES = 32
_MIN_KEY_BYTES = 16


def create_key(
    path: str | os.PathLike[str], *, overwrite: bool = False, key: bytes | None = None
) -> Path:
    """Write a new random 32-byte key (hex) to ``path`` with permissions 0600.

    Args:
        path: Where to write the key. Keep it outside any folder you release.
        overwrite: Replace an existing key (this breaks consistency with earlier runs).
        key: The key bytes to store instead of fresh random ones (at least 16 bytes): a key
            imported from a key manager, or a fixed key for *synthetic* data only (the demo
            derives its key from its seed so that two runs with one seed are identical).
            Never pass a guessable key for real patients' data.

    Returns:
        The key file path.

    Raises:
        DeidentificationError: ``path`` exists and ``overwrite`` is false, or ``key`` is
            shorter than 16 bytes.
    """
    target = Path(path)
    if key is not None and len(key) < _MIN_KEY_BYTES:
        raise DeidentificationError(
            f"expected a key of at least {_MIN_KEY_BYTES} bytes, got {len(key)}; "
            "omit `key` to draw 32 random bytes"
        )
    if target.exists() and not overwrite:
        raise DeidentificationError(
            f"expected no file at the new key path, got an existing {target.name!r}; "
            "reuse it with --key, or delete it first if you really want a new key "
            "(pseudonyms will no longer match earlier runs)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write((key.hex() if key is not None else secrets.token_hex(KEY_BYTES)) + "\n")
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    return target


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key file written by :func:`create_key` (hex text) or raw random bytes.

    Raises:
        DeidentificationError: The file is missing or holds fewer than 16 bytes of key.
    """
    source = Path(path)
    if not source.is_file():
        raise DeidentificationError(
            f"expected a key file at {str(source)!r}, found none; create one with "
            "`hidim deid ... --key PATH --create-key` (32 random bytes, mode 0600) and keep "
            "it secret and outside the released data"
        )
    data = source.read_bytes()
    text = data.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = data
    if len(key) < _MIN_KEY_BYTES:
        raise DeidentificationError(
            f"expected a key of at least {_MIN_KEY_BYTES} bytes in {source.name!r}, got "
            f"{len(key)}; create a proper key with --create-key"
        )
    return key
