"""Shift DICOM dates and times (DA, TM, DT) by a fixed offset, keeping their precision.

The offset is per patient (:func:`hidim.deidentify.pseudonyms.date_shift`): whole days plus
whole hours, so intervals within a patient are preserved exactly and a time given to the hour
keeps that precision. A date shifted together with its time (``StudyDate`` + ``StudyTime``)
moves to the next or previous day when the time crosses midnight; a lone time wraps around
24 h; a lone date moves by the whole days of the offset.

Values that do not parse as the VR says are reported as ``None`` so the caller can empty them
(a malformed date may be free text — a name typed in the wrong field).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["shift_date", "shift_time", "shift_datetime", "shift_date_time_pair"]

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(\.\d{1,6})?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")


def _whole_days(delta: timedelta) -> timedelta:
    return timedelta(days=delta.days if delta >= timedelta(0) else -((-delta).days))


def shift_date(value: str, delta: timedelta) -> str | None:
    """Shift a DA value (``YYYYMMDD``) by the whole days of ``delta``; ``None`` if invalid."""
    m = _DA_RE.match(value.strip())
    if m is None:
        return None
    try:
        day = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return (day + _whole_days(delta)).strftime("%Y%m%d")


def _parse_time(value: str) -> tuple[int, int | None, int | None, str] | None:
    m = _TM_RE.match(value.strip())
    if m is None:
        return None
    hh = int(m.group(1))
    mm = int(m.group(2)) if m.group(2) else None
    ss = int(m.group(3)) if m.group(3) else None
    if hh > 23 or (mm is not None and mm > 59) or (ss is not None and ss > 60):
        return None
    return hh, mm, ss, m.group(4) or ""


def _format_time(moment: datetime, mm: int | None, ss: int | None, frac: str) -> str:
    out = f"{moment.hour:02d}"
    if mm is not None:
        out += f"{moment.minute:02d}"
        if ss is not None:
            out += f"{moment.second:02d}{frac}"
    return out


def shift_time(value: str, delta: timedelta) -> str | None:
    """Shift a TM value by the sub-day part of ``delta`` (wrapping at midnight)."""
    parsed = _parse_time(value)
    if parsed is None:
        return None
    hh, mm, ss, frac = parsed
    base = datetime(2000, 1, 1, hh, mm or 0, min(ss or 0, 59))
    return _format_time(base + (delta - _whole_days(delta)), mm, ss, frac)


def shift_date_time_pair(
    date_value: str, time_value: str, delta: timedelta
) -> tuple[str | None, str | None]:
    """Shift a date and its time together (the date moves when the time crosses midnight)."""
    m = _DA_RE.match(date_value.strip())
    parsed = _parse_time(time_value)
    if m is None or parsed is None:
        new_date = shift_date(date_value, delta) if m is not None else None
        new_time = shift_time(time_value, delta) if parsed is not None else None
        return new_date, new_time
    hh, mm, ss, frac = parsed
    try:
        moment = datetime(
            int(m.group(1)), int(m.group(2)), int(m.group(3)), hh, mm or 0, min(ss or 0, 59)
        )
    except ValueError:
        return None, shift_time(time_value, delta)
    moved = moment + delta
    return moved.strftime("%Y%m%d"), _format_time(moved, mm, ss, frac)


def shift_datetime(value: str, delta: timedelta) -> str | None:
    """Shift a DT value (``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``) keeping its precision."""
    m = _DT_RE.match(value.strip())
    if m is None:
        return None
    parts = [m.group(i) for i in range(1, 7)]
    try:
        moment = datetime(
            int(parts[0]),
            int(parts[1] or 1),
            int(parts[2] or 1),
            int(parts[3] or 0),
            int(parts[4] or 0),
            min(int(parts[5] or 0), 59),
        )
    except ValueError:
        return None
    moved = moment + delta
    full = moved.strftime("%Y%m%d%H%M%S")
    width = 4 + 2 * sum(1 for p in parts[1:] if p)
    out = full[:width]
    if parts[5] and m.group(7):
        out += m.group(7)
    return out + (m.group(8) or "")
