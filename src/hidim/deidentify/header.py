"""Apply a :class:`~hidim.deidentify.profile.HeaderPlan` to a pydicom data set.

One recursive walk visits every element at every depth, inside every item of every sequence
(standard, private, nested). Per element it does one dictionary lookup in the precomputed plan;
elements that are simply kept are never decoded (they stay raw bytes), and values it changes
(UIDs, dates, dummies, empty values: all ASCII) are written back as raw, already encoded
elements, which is what makes the pass cheaper than a naive read → modify → write loop.

Structural rules that hold whatever the table says:

* private elements (odd groups) are removed at every depth — private creators, private
  sequences and the items inside them — unless the option ``retain_safe_private`` is on and
  the block's private creator is on the explicit safe list;
* overlays (groups 6000-60FF), curves (5000-50FF) and retired variable pixel data
  (7F00-7FFF other than 7FE0) are removed, as are group lengths and command (0000), file
  meta (0002) and directory (0004) elements found inside the data set;
* public tags that the data dictionary does not know are removed (``strict``);
* a public element stored as ``UN`` is decoded with its dictionary VR first;
* kept free text is searched for UIDs, which are replaced by their keyed UIDs;
* in a sequence whose action is ``D`` every free-text element inside is replaced by a dummy;
  under a ``C`` (clean structured content) free text must pass the clean rule, codes are kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydicom.datadict import dictionary_has_tag, repeater_has_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from hidim.deidentify.clean import clean_text
from hidim.deidentify.dates import shift_date, shift_date_time_pair, shift_datetime, shift_time
from hidim.deidentify.profile import HeaderPlan, Operation
from hidim.deidentify.pseudonyms import accession_pseudonym, name_pseudonym, patient_pseudonym
from hidim.deidentify.rawvalues import ascii_values as _strings
from hidim.deidentify.rawvalues import dummy as _dummy
from hidim.deidentify.rawvalues import dummy_at as _dummy_tag
from hidim.deidentify.rawvalues import empty as _empty
from hidim.deidentify.rawvalues import has_value as _has_value
from hidim.deidentify.rawvalues import put_ascii as _put
from hidim.deidentify.rawvalues import set_values as _set_values
from hidim.deidentify.rawvalues import values_of as _values
from hidim.deidentify.uids import remap_uid

__all__ = ["HeaderContext", "HeaderStats", "deidentify_header", "UID_KINDS"]

_NORMAL, _SCRUB, _CLEAN = 0, 1, 2

#: Re-identification table kind of a UID, by the tag it was found in.
UID_KINDS = {
    0x0020000D: "study_uid",
    0x0020000E: "series_uid",
    0x00080018: "sop_uid",
    0x00081155: "sop_uid",
    0x00041511: "sop_uid",
    0x00020003: "sop_uid",
}

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
_CODE_TAGS = frozenset(
    {0x00080100, 0x00080102, 0x00080103, 0x00080104, 0x00080105, 0x0008010F, 0x00080119,
     0x00080120, 0x0040A040, 0x0040A010}
)  # fmt: skip


@dataclass
class HeaderStats:
    """What the walk did (counts only: never values)."""

    operations: Counter[str] = field(default_factory=Counter)
    private_removed: int = 0
    private_kept: int = 0
    overlay_removed: int = 0
    curve_removed: int = 0
    unknown_removed: int = 0
    group_length_removed: int = 0
    invalid_temporal_emptied: int = 0
    max_depth: int = 0


@dataclass
class HeaderContext:
    """Per-file state of the walk: key, date shift, vocabulary and the mappings recorded.

    Attributes:
        key: The project key.
        shift: The patient's date offset, or ``None`` when dates are not shifted.
        vocabulary: Words that the clean rule accepts (``None``: the shipped list).
        reid: ``{(kind, original): pseudonym}`` collected for the re-identification table.
        stats: Counters for the audit.
    """

    key: bytes
    shift: timedelta | None = None
    vocabulary: frozenset[str] | None = None
    reid: dict[tuple[str, str], str] = field(default_factory=dict)
    stats: HeaderStats = field(default_factory=HeaderStats)

    def uid(self, value: str, tag: int) -> str:
        new = remap_uid(value, self.key)
        original = value.strip("\x00 ")
        if new != original:
            self.reid[(UID_KINDS.get(tag, "uid"), original)] = new
        return new

    def pseudonym(self, kind: str, value: str, fn: Callable[[str, bytes], str]) -> str:
        original = value.strip()
        if not original:
            return ""
        new = fn(original, self.key)
        self.reid[(kind, original)] = new
        return new


def _is_sequence(plan: HeaderPlan, tag: int, raw: Any) -> bool:
    """Whether an element holds items to walk: a known sequence, anything encoded as SQ, or
    an undefined-length element without a VR (implicit VR, ``UN``)."""
    if tag in plan.known_sequences:
        return True
    vr = raw.VR
    if vr == "SQ":
        return True
    if vr is None or vr == "UN":
        if type(raw) is RawDataElement:
            return bool(raw.length == 0xFFFFFFFF)
        return isinstance(raw.value, list)
    return False


#: Dictionary VRs for which a public element stored as ``UN`` is decoded (and written back)
#: with its real VR: everything that can hold identifying text, UIDs, dates or items.
_DECODE_UN_AS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "SQ", "ST", "TM", "UC",
     "UI", "UR", "UT"}
)  # fmt: skip


def _vr_of(plan: HeaderPlan, tag: int, raw: Any) -> str:
    """The VR an element really has: its own, or the dictionary's when read without one
    (implicit VR) or as ``UN``."""
    vr = raw.VR
    if vr is None or vr == "UN" or " or " in vr:
        return plan.vrs.get(tag, vr or "UN")
    return str(vr)


def _shift_element(ds: Dataset, tag: int, vr: str, plan: HeaderPlan, ctx: HeaderContext) -> None:
    delta = ctx.shift
    if delta is None:
        _empty(ds, tag, vr)
        return
    raw_dict = ds._dict
    if vr == "DA":
        partner = plan.date_time_pairs.get(tag)
        if partner is not None and partner in raw_dict:
            dates, times = _strings(ds, tag), _strings(ds, partner)
            if len(dates) == 1 and len(times) <= 1:
                time_value = times[0] if times else ""
                new_date, new_time = shift_date_time_pair(dates[0], time_value, delta)
                _assign_temporal(ds, tag, "DA", new_date, ctx)
                if time_value:
                    _assign_temporal(ds, partner, "TM", new_time, ctx)
                ctx.stats.operations["shift_time"] += 1
                return
        fn: Callable[[str, timedelta], str | None] = shift_date
    elif vr == "TM":
        partner = plan.time_date_pairs.get(tag)
        if partner is not None and partner in raw_dict:
            dates, times = _strings(ds, partner), _strings(ds, tag)
            if len(dates) == 1 and len(times) <= 1:
                return  # shifted together with its date
        fn = shift_time
    elif vr == "DT":
        fn = shift_datetime
    else:
        # A temporal attribute that is not DA/DT/TM cannot be shifted consistently.
        raw_dict.pop(tag, None)  # type: ignore[call-overload]
        return
    out: list[str] = []
    for value in _strings(ds, tag):
        if not value:
            continue
        new = fn(value, delta)
        if new is None:
            ctx.stats.invalid_temporal_emptied += 1
            _empty(ds, tag, vr)
            return
        out.append(new)
    _put(ds, tag, vr, out)


def _assign_temporal(ds: Dataset, tag: int, vr: str, value: str | None, ctx: HeaderContext) -> None:
    if value is None:
        ctx.stats.invalid_temporal_emptied += 1
        _empty(ds, tag, vr)
    else:
        _put(ds, tag, vr, [value])


def _keep_private(ds: Dataset, tag: int, plan: HeaderPlan) -> bool:
    opts = plan.options
    if not opts.retain_safe_private:
        return False
    element = tag & 0xFFFF
    if element < 0x0010:
        return False
    group = tag >> 16
    creator_tag = (group << 16) | (element if element <= 0x00FF else element >> 8)
    if creator_tag not in ds._dict:
        return False
    creator = ds[creator_tag].value
    return isinstance(creator, str) and creator.strip() in opts.safe_private_creators


_TEMPORAL = frozenset({"DA", "DT", "TM"})


def _kept_private_value(ds: Dataset, tag: int, ctx: HeaderContext) -> None:
    """A private element kept by the safe list still loses what the VR says is identifying:
    UIDs are remapped, person names emptied, dates/times shifted (or emptied)."""
    raw = ds._dict[tag]  # type: ignore[index]
    vr = raw.VR
    if vr is None or vr == "UN":
        elem = ds[tag]  # pydicom's private dictionary may know the VR
        vr = elem.VR
    if vr == "UI":
        _put(ds, tag, "UI", [ctx.uid(v, tag) for v in _strings(ds, tag) if v])
    elif vr == "PN":
        _empty(ds, tag, vr)
    elif vr in _TEXT_VRS:
        _uids_in_text(ds, tag, ds._dict[tag], ctx)  # type: ignore[index]
    elif vr in _TEMPORAL:
        out: list[str] = []
        for value in _strings(ds, tag):
            fn = {"DA": shift_date, "TM": shift_time, "DT": shift_datetime}[vr]
            new = fn(value, ctx.shift) if ctx.shift is not None and value else None
            if new is None:
                out = []
                break
            out.append(new)
        _put(ds, tag, vr, out)


def _walk(ds: Dataset, plan: HeaderPlan, ctx: HeaderContext, mode: int, depth: int) -> None:
    stats = ctx.stats
    if depth > stats.max_depth:
        stats.max_depth = depth
    raw_dict = ds._dict
    dispatch = plan.dispatch
    private_touched = False
    vrs = plan.vrs
    text_tags = plan.text_tags
    for tag in list(raw_dict):  # BaseTag keys: raw_dict operations use the key object itself
        if tag not in raw_dict:
            continue  # removed together with a partner
        t = int(tag)  # plain int for the plan's lookups (BaseTag.__eq__ is Python-level)
        group = t >> 16
        if group & 1:
            if _keep_private(ds, tag, plan):
                stats.private_kept += 1
                raw = raw_dict[tag]
                if _is_sequence(plan, t, raw):
                    _walk_items(ds, tag, plan, ctx, mode, depth)
                elif (t & 0xFFFF) > 0x00FF:
                    _kept_private_value(ds, tag, ctx)
                continue
            del raw_dict[tag]
            private_touched = True
            stats.private_removed += 1
            continue
        if group >= 0x5000:
            high = group & 0xFF00
            if high == 0x6000:
                del raw_dict[tag]
                stats.overlay_removed += 1
                continue
            if high == 0x5000:
                del raw_dict[tag]
                stats.curve_removed += 1
                continue
            if high == 0x7F00 and group != 0x7FE0:
                del raw_dict[tag]
                stats.unknown_removed += 1
                continue
        elif group <= 0x0004:
            # Command (0000), file meta (0002) and directory (0004) elements do not belong in
            # a stored data set; the file meta is rebuilt, the rest can only leak.
            del raw_dict[tag]
            stats.unknown_removed += 1
            continue
        if t & 0xFFFF == 0:
            del raw_dict[tag]
            stats.group_length_removed += 1
            continue
        raw = raw_dict[tag]
        if raw.VR == "UN" and vrs.get(t) in _DECODE_UN_AS and type(raw) is RawDataElement:
            raw = ds[tag]  # a public element stored as UN: decode it with its real VR
        op = dispatch.get(t)
        if op is None or op is Operation.KEEP:
            if op is None and plan.remove_unknown_public and t not in plan.known_tags:
                if not (dictionary_has_tag(t) or repeater_has_tag(t)):
                    del raw_dict[tag]
                    stats.unknown_removed += 1
                    continue
            if _is_sequence(plan, t, raw):
                if not _walk_items(ds, tag, plan, ctx, mode, depth):
                    stats.unknown_removed += 1
                continue
            if t in text_tags:
                if mode != _NORMAL:
                    _text_in_mode(ds, tag, mode, plan, ctx)
                elif _has_value(raw):
                    _uids_in_text(ds, tag, raw, ctx)
            continue
        stats.operations[op.value] += 1
        if op is Operation.REMOVE:
            del raw_dict[tag]
            continue
        if (
            op is Operation.RECURSE
            or op is Operation.SCRUB_SEQUENCE
            or (op is Operation.CLEAN_SEQUENCE)
        ):
            child = {
                Operation.RECURSE: mode,
                Operation.SCRUB_SEQUENCE: _SCRUB,
                Operation.CLEAN_SEQUENCE: max(mode, _CLEAN) if mode != _SCRUB else _SCRUB,
            }[op]
            _walk_items(ds, tag, plan, ctx, child, depth)
            continue
        vr = _vr_of(plan, t, raw)
        if op is Operation.EMPTY:
            _empty(ds, tag, vr)
        elif op is Operation.DUMMY:
            if vr == "SQ":
                _walk_items(ds, tag, plan, ctx, _SCRUB, depth)
            else:
                _dummy_tag(ds, tag, vr)
        elif op is Operation.REMAP_UID:
            _put(ds, tag, "UI", [ctx.uid(v, t) for v in _strings(ds, tag) if v])
        elif op is Operation.SHIFT_TIME:
            _shift_element(ds, t, vr, plan, ctx)
        elif op is Operation.CLEAN_TEXT:
            _clean_element(ds, ds[tag], ctx)
        elif op is Operation.PSEUDONYM_ID:
            _pseudonym(ds, tag, "patient_id", patient_pseudonym, ctx)
        elif op is Operation.PSEUDONYM_NAME:
            _pseudonym(ds, tag, "patient_name", name_pseudonym, ctx)
        elif op is Operation.PSEUDONYM_ACCESSION:
            _pseudonym(ds, tag, "accession", accession_pseudonym, ctx)
    if private_touched:
        ds._private_blocks = {}


def _walk_items(
    ds: Dataset, tag: Any, plan: HeaderPlan, ctx: HeaderContext, mode: int, depth: int
) -> bool:
    """Walk every item of the sequence at ``tag``; an element that should be a sequence
    but does not decode as one is removed (its content cannot be checked). Returns whether
    the sequence was kept."""
    try:
        elem = ds[tag]
        ok = elem.VR == "SQ" and all(isinstance(item, Dataset) for item in elem.value)
    except Exception:  # noqa: BLE001 - undecodable: removed below
        ok = False
    if not ok:
        del ds._dict[tag]
        return False
    for item in elem.value:
        _walk(item, plan, ctx, mode, depth + 1)
    return True


def _pseudonym(
    ds: Dataset, tag: int, kind: str, fn: Callable[[str, bytes], str], ctx: HeaderContext
) -> None:
    elem = ds[tag]
    original = "\\".join(str(v) for v in _values(elem.value) if v is not None)
    elem.value = ctx.pseudonym(kind, original, fn)


_UID_IN_TEXT = re.compile(rb"(?<![0-9.])[0-2](?:\.(?:0|[1-9][0-9]{0,38})){4,}(?![0-9])")


def _uids_in_text(ds: Dataset, tag: int, raw: Any, ctx: HeaderContext) -> None:
    """Replace UIDs embedded in kept free text by their keyed replacements."""
    value = raw.value if type(raw) is RawDataElement else None
    if value is None:
        text = "\\".join(str(v) for v in _values(raw.value) if v is not None)
        value = text.encode("utf-8", "replace")
    if b"." not in value or not _UID_IN_TEXT.search(value):
        return
    elem = ds[tag]
    if elem.VR not in _TEXT_VRS or elem.VR == "PN":
        return

    def swap(match: re.Match[str]) -> str:
        found = match.group(0)
        return ctx.uid(found, 0) if len(found) >= 10 else found

    pattern = re.compile(_UID_IN_TEXT.pattern.decode("ascii"))
    _set_values(elem, [pattern.sub(swap, str(v)) for v in _values(elem.value) if v is not None])
    ctx.stats.operations["remap_uid_in_text"] += 1


def _clean_element(ds: Dataset, elem: DataElement, ctx: HeaderContext) -> None:
    if elem.VR == "PN":
        _dummy(elem)
        return
    text = "\\".join(str(v) for v in _values(elem.value) if v is not None)
    if clean_text(text, ctx.vocabulary) is None:
        del ds._dict[elem.tag]
        ctx.stats.operations["clean_removed"] += 1


def _text_in_mode(ds: Dataset, tag: int, mode: int, plan: HeaderPlan, ctx: HeaderContext) -> None:
    raw = ds._dict[tag]  # type: ignore[index]
    vr = _vr_of(plan, tag, raw)
    if vr not in _TEXT_VRS or not _has_value(raw):
        return
    if mode == _SCRUB:
        _dummy_tag(ds, tag, vr)
        ctx.stats.operations["dummy"] += 1
    elif tag not in _CODE_TAGS:
        _clean_element(ds, ds[tag], ctx)


def deidentify_header(
    ds: Dataset, plan: HeaderPlan, ctx: HeaderContext, *, extra_removals: Iterable[int] = ()
) -> HeaderStats:
    """De-identify ``ds`` in place (not its file meta) and return the counts.

    Args:
        ds: The data set (as read by pydicom; elements may still be raw).
        plan: The compiled profile (:func:`hidim.deidentify.profile.cached_plan`).
        ctx: Key, date shift, and the collector for re-identification pairs.
        extra_removals: Top-level tags to remove in addition to the plan.

    Returns:
        The :class:`HeaderStats` of this data set (also in ``ctx.stats``).
    """
    for tag in extra_removals:
        ds._dict.pop(tag, None)  # type: ignore[call-overload]
    _walk(ds, plan, ctx, _NORMAL, 0)
    return ctx.stats
