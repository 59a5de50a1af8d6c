"""The clean rule for free-text descriptors (Clean Descriptors / Clean Structured Content).

PS3.15 ``C`` means "replace with values of similar meaning known not to contain identifying
information". hidim cannot rewrite arbitrary prose safely, so cleaning is a *keep-if-safe*
rule: a value is kept only when every word in it is on a vocabulary of imaging terms
(``clean_vocabulary.txt``, extendable per site) or is a short number/measurement token
(``T2``, ``5MM``, ``3D``); anything else — a name, a place, a long number — removes the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

__all__ = ["default_vocabulary", "is_clean", "clean_text"]

_WORD_RE = re.compile(r"[A-Za-z0-9]+")
# Short alphanumeric tokens with at most 4 digits and at most 3 letters around them:
# "T2", "5MM", "3D", "B800", "0.5" (split on '.'). Long digit runs (MRNs, dates) fail.
_MEASURE_RE = re.compile(r"^[A-Za-z]{0,3}\d{1,4}[A-Za-z]{0,3}$")


@lru_cache(maxsize=1)
def default_vocabulary() -> frozenset[str]:
    """The shipped vocabulary of imaging words (lower case)."""
    text = resources.files("hidim.deidentify").joinpath("clean_vocabulary.txt").read_text("utf-8")
    words: set[str] = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        words.update(w.lower() for w in line.split())
    return frozenset(words)


def is_clean(value: str, vocabulary: Iterable[str] | None = None) -> bool:
    """Whether every word of ``value`` is a known imaging term or a short measurement."""
    vocab = frozenset(vocabulary) if vocabulary is not None else default_vocabulary()
    for word in _WORD_RE.findall(value):
        if word.lower() in vocab or _MEASURE_RE.match(word):
            continue
        return False
    return True


def clean_text(value: str, vocabulary: Iterable[str] | None = None) -> str | None:
    """``value`` if it passes :func:`is_clean`, else ``None`` (the caller removes it)."""
    return value if is_clean(value, vocabulary) else None
