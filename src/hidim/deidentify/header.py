"""Apply a :class:`~hidim.deidentify.profile.HeaderPlan` to a pydicom data set.

One recursive walk visits every element at every depth, inside every item of every sequence
(standard, private, nested). Per element it does one dictionary lookup in the precomputed plan;
elements that are simply kept are never decoded (they stay raw bytes), which is what makes the
pass cheaper than a naive read → modify → write loop.

Structural rules that hold whatever the table says:

* private elements (odd groups) are removed at every depth — private creators, private
  sequences and the items inside them — unless the option ``retain_safe_private`` is on and
  the block's private creator is on the explicit safe list;
* overlays (groups 6000-60FF), curves (5000-50FF) and retired variable pixel data
  (7F00-7FFF other than 7FE0) are removed, as are group lengths;
* public tags that the data dictionary does not know are removed (``strict``);
* in a sequence whose action is ``D`` every free-text element inside is replaced by a dummy;
  under a ``C`` (clean structured content) free text must pass the clean rule, codes are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydicom.datadict import dictionary_has_tag, repeater_has_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hidim.deidentify.clean import clean_text
from hidim.deidentify.dates import shift_date, shift_date_time_pair, shift_datetime, shift_time
from hidim.deidentify.profile import HeaderPlan, Operation
from hidim.deidentify.pseudonyms import accession_pseudonym, name_pseudonym, patient_pseudonym
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

_DUMMY = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED^ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}


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


def _values(value: Any) -> list[Any]:
    if isinstance(value, (list, MultiValue)):
        return list(value)
    return [value]


def _set_values(elem: DataElement, values: list[Any]) -> None:
    elem.value = values if len(values) > 1 else (values[0] if values else elem.empty_value)


def _is_sequence(plan: HeaderPlan, tag: int, raw: Any) -> bool:
    if tag in plan.known_sequences:
        return True
    vr = getattr(raw, "VR", None)
    if vr == "SQ":
        return True
    return vr in (None, "UN") and getattr(raw, "length", 0) == 0xFFFFFFFF


def _dummy(elem: DataElement) -> None:
    vr = elem.VR
    if vr in _DUMMY:
        elem.value = _DUMMY[vr]
    else:
        elem.value = elem.empty_value


def _shift_element(ds: Dataset, elem: DataElement, plan: HeaderPlan, ctx: HeaderContext) -> None:
    delta = ctx.shift
    if delta is None:
        elem.value = elem.empty_value
        return
    vr = elem.VR
    tag = int(elem.tag)
    if vr == "DA":
        partner = plan.date_time_pairs.get(tag)
        if partner is not None and partner in ds._dict:
            time_elem = ds[partner]
            if isinstance(elem.value, str) and isinstance(time_elem.value, str) and elem.value:
                new_date, new_time = shift_date_time_pair(elem.value, time_elem.value, delta)
                _assign_temporal(elem, new_date, ctx)
                if time_elem.value:
                    _assign_temporal(time_elem, new_time, ctx)
                ctx.stats.operations["shift_time"] += 1
                return
        fn: Callable[[str, timedelta], str | None] = shift_date
    elif vr == "TM":
        partner = plan.time_date_pairs.get(tag)
        if partner is not None and partner in ds._dict and ds[partner].value:
            return  # shifted together with its date
        fn = shift_time
    elif vr == "DT":
        fn = shift_datetime
    else:
        ds._dict.pop(elem.tag, None)
        return
    out: list[str] = []
    for v in _values(elem.value):
        if v is None or str(v) == "":
            continue
        new = fn(str(v), delta)
        if new is None:
            ctx.stats.invalid_temporal_emptied += 1
            elem.value = elem.empty_value
            return
        out.append(new)
    _set_values(elem, out)


def _assign_temporal(elem: DataElement, value: str | None, ctx: HeaderContext) -> None:
    if value is None:
        ctx.stats.invalid_temporal_emptied += 1
        elem.value = elem.empty_value
    else:
        elem.value = value


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


def _walk(ds: Dataset, plan: HeaderPlan, ctx: HeaderContext, mode: int, depth: int) -> None:
    stats = ctx.stats
    if depth > stats.max_depth:
        stats.max_depth = depth
    raw_dict = ds._dict
    ops = plan.ops
    private_touched = False
    for tag in list(raw_dict):
        t = int(tag)
        if tag not in raw_dict:
            continue  # removed together with a partner
        group = t >> 16
        if group & 1:
            if _keep_private(ds, t, plan):
                stats.private_kept += 1
                if _is_sequence(plan, t, raw_dict[tag]):
                    for item in ds[tag].value:
                        _walk(item, plan, ctx, mode, depth + 1)
                continue
            del raw_dict[tag]
            private_touched = True
            stats.private_removed += 1
            continue
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
        if t & 0xFFFF == 0:
            del raw_dict[tag]
            stats.group_length_removed += 1
            continue
        op = ops.get(t)
        if op is None:
            if plan.remove_unknown_public and t not in plan.known_tags:
                if not (dictionary_has_tag(t) or repeater_has_tag(t)):
                    del raw_dict[tag]
                    stats.unknown_removed += 1
                    continue
            if mode != _NORMAL and t in plan.text_tags:
                _text_in_mode(ds, t, mode, ctx)
                continue
            if _is_sequence(plan, t, raw_dict[tag]):
                elem = ds[tag]
                if elem.VR == "SQ":
                    for item in elem.value:
                        _walk(item, plan, ctx, mode, depth + 1)
            continue
        if op is Operation.KEEP:
            if _is_sequence(plan, t, raw_dict[tag]):
                for item in ds[tag].value:
                    _walk(item, plan, ctx, mode, depth + 1)
            elif mode != _NORMAL and t in plan.text_tags:
                _text_in_mode(ds, t, mode, ctx)
            continue
        stats.operations[op.value] += 1
        if op is Operation.REMOVE:
            del raw_dict[tag]
            continue
        elem = ds[tag]
        if (
            op is Operation.RECURSE
            or op is Operation.SCRUB_SEQUENCE
            or (op is Operation.CLEAN_SEQUENCE)
        ):
            if elem.VR != "SQ":
                continue
            child = {
                Operation.RECURSE: mode,
                Operation.SCRUB_SEQUENCE: _SCRUB,
                Operation.CLEAN_SEQUENCE: max(mode, _CLEAN) if mode != _SCRUB else _SCRUB,
            }[op]
            for item in elem.value:
                _walk(item, plan, ctx, child, depth + 1)
        elif op is Operation.EMPTY:
            elem.value = [] if elem.VR == "SQ" else elem.empty_value
        elif op is Operation.DUMMY:
            if elem.VR == "SQ":
                for item in elem.value:
                    _walk(item, plan, ctx, _SCRUB, depth + 1)
            else:
                _dummy(elem)
        elif op is Operation.REMAP_UID:
            _set_values(elem, [ctx.uid(str(v), t) for v in _values(elem.value) if v])
        elif op is Operation.SHIFT_TIME:
            _shift_element(ds, elem, plan, ctx)
        elif op is Operation.CLEAN_TEXT:
            _clean_element(ds, elem, ctx)
        elif op is Operation.PSEUDONYM_ID:
            elem.value = ctx.pseudonym("patient_id", str(elem.value or ""), patient_pseudonym)
        elif op is Operation.PSEUDONYM_NAME:
            elem.value = ctx.pseudonym("patient_name", str(elem.value or ""), name_pseudonym)
        elif op is Operation.PSEUDONYM_ACCESSION:
            elem.value = ctx.pseudonym("accession", str(elem.value or ""), accession_pseudonym)
    if private_touched:
        ds._private_blocks = {}


def _clean_element(ds: Dataset, elem: DataElement, ctx: HeaderContext) -> None:
    if elem.VR == "PN":
        _dummy(elem)
        return
    text = "\\".join(str(v) for v in _values(elem.value) if v is not None)
    if clean_text(text, ctx.vocabulary) is None:
        del ds._dict[elem.tag]
        ctx.stats.operations["clean_removed"] += 1


def _text_in_mode(ds: Dataset, tag: int, mode: int, ctx: HeaderContext) -> None:
    elem = ds[tag]
    if elem.VR not in _TEXT_VRS or elem.is_empty:
        return
    if mode == _SCRUB:
        _dummy(elem)
        ctx.stats.operations["dummy"] += 1
    elif tag not in _CODE_TAGS:
        _clean_element(ds, elem, ctx)


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
