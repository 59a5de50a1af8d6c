"""Echo view label from the header: ViewCodeSequence first, then the series description.

Canonical labels: ``A4C``, ``A2C``, ``A3C`` (apical long axis), ``A5C``, ``PLAX``, ``PSAX``,
``SUBCOSTAL``, ``SSN`` (suprasternal notch). A coded view whose meaning is not one of these
is kept verbatim (it is still the standard's label); a free-text description that matches
nothing gives ``None``. Free-text matching is done for ultrasound only, because the same
abbreviations mean different planes in cardiac MR ("SAX" stacks are not PSAX).
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset

from hidim.ingest.dsutil import get_str

__all__ = ["VIEW_LABELS", "view_from_text", "view_label"]

VIEW_LABELS = ("A4C", "A2C", "A3C", "A5C", "PLAX", "PSAX", "SUBCOSTAL", "SSN")


def _t(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])")


# The most specific patterns first: "apical long axis" must not become PLAX.
_VIEW_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("SUBCOSTAL", _t(r"subcostal|sub ?xiphoid|sc ?4c|sc ?ivc|subc")),
    ("SSN", _t(r"(?:suprasternal|ssn)")),
    ("A5C", _t(r"(?:apical )?(?:five|5) ?(?:chamber|ch|c)|a ?5 ?c|ap ?5")),
    ("A4C", _t(r"(?:apical )?(?:four|4) ?(?:chamber|ch|c)|a ?4 ?c|ap ?4")),
    (
        "A3C",
        _t(r"(?:apical )?(?:three|3) ?(?:chamber|ch|c)|a ?3 ?c|ap ?3|aplax|apical long axis|alax"),
    ),
    ("A2C", _t(r"(?:apical )?(?:two|2) ?(?:chamber|ch|c)|a ?2 ?c|ap ?2")),
    ("PLAX", _t(r"plax|parasternal long(?: axis)?|psla")),
    ("PSAX", _t(r"psax|parasternal short(?: axis)?|pssa|sax(?: (?:av|mv|pm|apex|ap|base|mid))?")),
)


def view_from_text(text: str | None) -> str | None:
    """Canonical view label found in free text (a description or a code meaning)."""
    if not text:
        return None
    normalised = re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
    for label, pattern in _VIEW_PATTERNS:
        if pattern.search(normalised):
            return label
    return None


def view_label(ds: Dataset) -> tuple[str | None, str | None]:
    """View label of one instance and the attribute it came from.

    Args:
        ds: a dataset (header only is enough).

    Returns:
        ``(label, source)`` with source ``"ViewCodeSequence"`` or ``"SeriesDescription"``,
        or ``(None, None)`` when the header does not say.
    """
    try:
        items = ds.get("ViewCodeSequence") or ()
        meaning = get_str(items[0], "CodeMeaning") if items else None
    except Exception:
        meaning = None
    if meaning:
        return view_from_text(meaning) or meaning, "ViewCodeSequence"
    if get_str(ds, "Modality") != "US":
        return None, None
    for keyword in ("SeriesDescription", "ProtocolName"):
        label = view_from_text(get_str(ds, keyword))
        if label:
            return label, keyword
    return None, None
