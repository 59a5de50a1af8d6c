"""The PS3.15 Annex E confidentiality profile as data: load Table E.1-1, resolve options.

``profile_e11.csv`` (beside this module) holds Table E.1-1 row by row. This module turns it,
plus the options the user chose, into a :class:`HeaderPlan`: a precomputed
``{tag: Operation}`` dictionary that :mod:`hidim.deidentify.header` applies in one recursive
walk. Nothing about individual attributes is coded as branches here; the rules are:

* **Options** override the Basic Profile column when enabled. When several enabled options
  name the same attribute, ``K`` wins over ``C``, which wins over ``X`` (the option that
  retains the most is what the user asked for).
* ``X`` on a non-sequence attribute that the table flags as used in standard composite IODs
  becomes ``Z`` (emptied, not removed): no information survives either way, and a Type 2
  attribute must stay present for the object to remain valid.
* **Combined codes** (Table E.1-1a) need the attribute's Type in the IOD, which a de-identifier
  working on arbitrary SOP classes does not know. hidim resolves them to the action that keeps
  the object valid whatever the Type, which is still non-identifying:
  ``X/Z → Z``, ``X/D → D``, ``Z/D → D``, ``X/Z/D → D``, ``X/Z/U* → U*`` (sequence kept, the
  UIDs inside remapped). See :func:`resolve_combined`.
* **Strict extras** (on by default, ``strict=True``): the table lists attributes by name and
  misses identifiers that sit in attributes it does not name (``InstanceCreationDate``,
  ``RetrieveURL``, an unlisted person name). By value representation, every other PN is
  emptied, every UI is remapped (unless it names a class — SOP class, transfer syntax, coding
  scheme), every DA/DT/TM is shifted (modified-dates option) or removed, every UR/AE is
  removed, and every attribute whose keyword says comment, address or telephone is treated as
  a descriptor. Public tags unknown to the data dictionary are removed.

Enums hold the DICOM strings (:class:`Action`) so they round-trip with the CSV.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from hidim.errors import ConfigError

__all__ = [
    "Action",
    "Operation",
    "OptionColumn",
    "ProfileRow",
    "ProfileOptions",
    "HeaderPlan",
    "load_table",
    "resolve_combined",
    "effective_code",
    "build_plan",
    "cached_plan",
    "CLASS_UID_TAGS",
]


class Action(StrEnum):
    """A PS3.15 Table E.1-1 action code (the value is the DICOM string)."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    X_Z = "X/Z"
    X_D = "X/D"
    Z_D = "Z/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"

    @classmethod
    def coerce(cls, value: str | Action) -> Action:
        """Parse a table cell, with a helpful error for anything else."""
        try:
            return cls(value.strip() if isinstance(value, str) else value)
        except ValueError:
            valid = ", ".join(a.value for a in cls)
            raise ConfigError(
                f"expected a PS3.15 action code ({valid}), got {value!r}; fix the profile table"
            ) from None


class OptionColumn(StrEnum):
    """The option columns of Table E.1-1 (values are the CSV column names)."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONG_FULL_DATES = "retain_long_full_dates"
    RETAIN_LONG_MODIFIED_DATES = "retain_long_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


class Operation(StrEnum):
    """What the header walk does to one element (hidim's executable form of an action)."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    REMAP_UID = "remap_uid"
    SHIFT_TIME = "shift_time"
    CLEAN_TEXT = "clean_text"
    PSEUDONYM_ID = "pseudonym_id"
    PSEUDONYM_NAME = "pseudonym_name"
    PSEUDONYM_ACCESSION = "pseudonym_accession"
    RECURSE = "recurse"
    SCRUB_SEQUENCE = "scrub_sequence"
    CLEAN_SEQUENCE = "clean_sequence"


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1."""

    tag: str
    keyword: str
    name: str
    in_std_comp_iod: bool
    basic: Action
    options: Mapping[OptionColumn, Action]


@dataclass(frozen=True, kw_only=True)
class ProfileOptions:
    """The profile options a de-identification run uses (PS3.15 E.3).

    Attributes:
        retain_safe_private: Keep private blocks whose creator is in ``safe_private_creators``.
        retain_uids: Keep UIDs as they are (off: every non-class UID is remapped).
        retain_device_identity: Keep device serial numbers, station names...
        retain_institution_identity: Keep institution names and addresses.
        retain_patient_characteristics: Keep age, sex, size, weight, ethnic group...
        retain_long_full_dates: Keep dates and times unchanged.
        retain_long_modified_dates: Shift every date/time by a per-patient offset.
        clean_descriptors: Keep free-text descriptors that pass the clean rule.
        clean_structured_content: Keep SR content with its free text cleaned.
        clean_graphics: Keep graphic annotations (text values cleaned).
        safe_private_creators: Private creator strings whose blocks are safe to keep.
        safe_list: Safe-list mode: keep only these tags (ints) — everything else is removed.
        strict: Apply hidim's VR-based extras beyond the table (see module docstring).
        pseudonymize_ids: Replace PatientID/PatientName/AccessionNumber by keyed pseudonyms
            (else they are emptied, the table's ``Z``).
    """

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = True
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    safe_private_creators: frozenset[str] = field(default_factory=frozenset)
    safe_list: frozenset[int] | None = None
    strict: bool = True
    pseudonymize_ids: bool = True

    def __post_init__(self) -> None:
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise ConfigError(
                "expected at most one of retain_long_full_dates / retain_long_modified_dates, "
                "got both; choose full dates (unchanged) or modified dates (shifted)"
            )
        if self.retain_safe_private and not self.safe_private_creators:
            raise ConfigError(
                "retain_safe_private needs a list of safe private creators, got none; pass "
                "safe_private_creators (e.g. {'SIEMENS CSA HEADER'}) or turn the option off"
            )

    def enabled_columns(self) -> tuple[OptionColumn, ...]:
        """The option columns of Table E.1-1 that this configuration switches on."""
        flags = {
            OptionColumn.RETAIN_SAFE_PRIVATE: self.retain_safe_private,
            OptionColumn.RETAIN_UIDS: self.retain_uids,
            OptionColumn.RETAIN_DEVICE_IDENTITY: self.retain_device_identity,
            OptionColumn.RETAIN_INSTITUTION_IDENTITY: self.retain_institution_identity,
            OptionColumn.RETAIN_PATIENT_CHARACTERISTICS: self.retain_patient_characteristics,
            OptionColumn.RETAIN_LONG_FULL_DATES: self.retain_long_full_dates,
            OptionColumn.RETAIN_LONG_MODIFIED_DATES: self.retain_long_modified_dates,
            OptionColumn.CLEAN_DESCRIPTORS: self.clean_descriptors,
            OptionColumn.CLEAN_STRUCTURED_CONTENT: self.clean_structured_content,
            OptionColumn.CLEAN_GRAPHICS: self.clean_graphics,
        }
        return tuple(col for col, on in flags.items() if on)


_TAG_RE = re.compile(r"^\(([0-9A-Fa-fXxGg]{4}),([0-9A-Fa-fXxEe]{4})\)$")

#: Tags whose UI value names a class, a syntax or a scheme, never an instance: always kept.
CLASS_UID_TAGS: frozenset[int] = frozenset(
    {
        0x00000002,  # AffectedSOPClassUID
        0x00000003,  # RequestedSOPClassUID
        0x00020002,  # MediaStorageSOPClassUID
        0x00020010,  # TransferSyntaxUID
        0x00020012,  # ImplementationClassUID
        0x00041510,  # ReferencedSOPClassUIDInFile
        0x00041512,  # ReferencedTransferSyntaxUIDInFile
        0x0004151A,  # ReferencedRelatedGeneralSOPClassUIDInFile
        0x00080016,  # SOPClassUID
        0x0008001A,  # RelatedGeneralSOPClassUID
        0x0008001B,  # OriginalSpecializedSOPClassUID
        0x00080062,  # SOPClassesInStudy
        0x0008010C,  # CodingSchemeUID
        0x00080117,  # ContextUID
        0x00080118,  # MappingResourceUID
        0x00081150,  # ReferencedSOPClassUID
        0x0008115A,  # SOPClassesSupported
        0x04000010,  # MACCalculationTransferSyntaxUID
        0x04000510,  # EncryptedContentTransferSyntaxUID
    }
)

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_BINARY_OR_SQ = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", ""})
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
_DESCRIPTOR_WORDS = (
    "Comment",
    "Address",
    "Telephone",
    "Telecom",
    "Notes",
    "Remark",
    "Reason",
    "Explanation",
    "Narrative",
    "History",
)


def _parse_row(raw: Mapping[str, str]) -> ProfileRow:
    options: dict[OptionColumn, Action] = {}
    for col in OptionColumn:
        cell = (raw.get(col.value) or "").strip()
        if cell:
            options[col] = Action.coerce(cell)
    return ProfileRow(
        tag=raw["tag"].strip().upper(),
        keyword=(raw.get("keyword") or "").strip(),
        name=raw["name"].strip(),
        in_std_comp_iod=raw["in_std_comp_iod"].strip() == "Y",
        basic=Action.coerce(raw["basic_profile"]),
        options=MappingProxyType(options),
    )


@lru_cache(maxsize=1)
def load_table() -> tuple[ProfileRow, ...]:
    """Read ``profile_e11.csv`` (Table E.1-1) shipped with hidim.

    Returns:
        One :class:`ProfileRow` per table row, in tag order.
    """
    text = resources.files("hidim.deidentify").joinpath("profile_e11.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = tuple(_parse_row(r) for r in csv.DictReader(lines))
    for row in rows:
        if not _TAG_RE.match(row.tag):
            raise ConfigError(
                f"expected tags like (0010,0010) or (60XX,3000) in profile_e11.csv, got "
                f"{row.tag!r}; fix the table row"
            )
    return rows


_COMBINED = {
    Action.X_Z: Action.ZERO,
    Action.X_D: Action.DUMMY,
    Action.Z_D: Action.DUMMY,
    Action.X_Z_D: Action.DUMMY,
    Action.X_Z_U: Action.UID,
}


def resolve_combined(action: Action) -> Action:
    """Resolve a combined code to one action, keeping the object valid whatever the Type.

    ``X/Z → Z``, ``X/D → D``, ``Z/D → D``, ``X/Z/D → D``, ``X/Z/U* → U`` (on a sequence:
    kept, with the UIDs inside remapped). Single codes are returned unchanged.
    """
    return _COMBINED.get(action, action)


_OPTION_PRIORITY = (Action.KEEP, Action.CLEAN, Action.REMOVE)


def effective_code(row: ProfileRow, options: ProfileOptions) -> Action:
    """The single action for ``row`` under ``options`` (options first, then Basic Profile)."""
    chosen = [row.options[c] for c in options.enabled_columns() if c in row.options]
    for preferred in _OPTION_PRIORITY:
        if preferred in chosen:
            return preferred
    if chosen:
        return resolve_combined(chosen[0])
    return resolve_combined(row.basic)


@dataclass(frozen=True)
class HeaderPlan:
    """Precomputed operations for the header walk.

    Attributes:
        ops: ``{tag: Operation}`` for every public tag that is not simply kept.
        known_sequences: Public tags whose VR is SQ (implicit-VR files carry no VR).
        known_tags: Every tag in the data dictionary (others are removed in strict mode).
        date_time_pairs: ``{date tag: time tag}`` shifted together (``StudyDate→StudyTime``).
        time_date_pairs: The inverse of ``date_time_pairs``.
        text_tags: Public tags with a text VR (LO, SH, ST, LT, UT, UC, PN).
        options: The options the plan was built from.
        remove_unknown_public: Remove public tags the data dictionary does not know.
        vrs: ``{tag: VR}`` of the data dictionary (first VR of ambiguous ones), for elements
            read without a VR (implicit VR) or as ``UN``.
        dispatch: What the header walk looks up per element: ``ops`` plus ``RECURSE`` for
            every other known sequence (a plain dict: one lookup per element).
    """

    ops: Mapping[int, Operation]
    known_sequences: frozenset[int]
    known_tags: frozenset[int]
    date_time_pairs: Mapping[int, int]
    time_date_pairs: Mapping[int, int]
    text_tags: frozenset[int]
    options: ProfileOptions
    remove_unknown_public: bool
    vrs: Mapping[int, str] = field(default_factory=dict)
    dispatch: Mapping[int, Operation] = field(default_factory=dict)


def _tag_int(tag: str) -> int | None:
    m = _TAG_RE.match(tag)
    if m is None or not all(c in "0123456789ABCDEF" for c in m.group(1) + m.group(2)):
        return None
    return int(m.group(1) + m.group(2), 16)


@lru_cache(maxsize=1)
def _retired() -> frozenset[int]:
    """Tags the data dictionary marks as retired."""
    from pydicom.datadict import DicomDictionary

    return frozenset(int(t) for t, entry in DicomDictionary.items() if entry[3])


@lru_cache(maxsize=1)
def _dictionary() -> tuple[dict[int, tuple[str, str]], dict[int, int]]:
    """``{tag: (VR, keyword)}`` for the data dictionary, and date→time keyword pairs."""
    from pydicom.datadict import DicomDictionary

    entries: dict[int, tuple[str, str]] = {}
    by_keyword: dict[str, int] = {}
    for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items():
        entries[int(tag)] = (vr, keyword)
        if keyword:
            by_keyword[keyword] = int(tag)
    pairs: dict[int, int] = {}
    for keyword, tag in by_keyword.items():
        if entries[tag][0] == "DA" and "Date" in keyword:
            partner = by_keyword.get(keyword.replace("Date", "Time"))
            if partner is not None and entries[partner][0] == "TM":
                pairs[tag] = partner
    return entries, pairs


#: Attributes the table does not name that hidim removes in strict mode: encrypted copies of
#: the original attributes (PHI, reversibly encrypted), and the file-set ID of the media the
#: file came from (often the patient's name or MRN).
_STRICT_REMOVALS = frozenset(
    {
        0x04000500,  # EncryptedAttributesSequence
        0x04000520,  # EncryptedContent
        0x00880130,  # StorageMediaFileSetID
    }
)

_PSEUDONYM_TAGS = {
    0x00100020: Operation.PSEUDONYM_ID,
    0x00100010: Operation.PSEUDONYM_NAME,
    0x00080050: Operation.PSEUDONYM_ACCESSION,
}


def _operation(action: Action, vr: str, options: ProfileOptions) -> Operation:
    """Executable operation for a resolved single action on an element of ``vr``."""
    if vr == "SQ":
        return {
            Action.KEEP: Operation.RECURSE,
            Action.UID: Operation.RECURSE,
            Action.REMOVE: Operation.REMOVE,
            Action.ZERO: Operation.EMPTY,
            Action.DUMMY: Operation.SCRUB_SEQUENCE,
            Action.CLEAN: Operation.CLEAN_SEQUENCE,
        }.get(action, Operation.REMOVE)
    if action is Action.CLEAN:
        if vr in _TEMPORAL_VRS:
            return Operation.SHIFT_TIME if options.retain_long_modified_dates else Operation.KEEP
        return Operation.CLEAN_TEXT
    if action is Action.UID:
        return Operation.REMAP_UID if vr == "UI" else Operation.REMOVE
    return {
        Action.KEEP: Operation.KEEP,
        Action.REMOVE: Operation.REMOVE,
        Action.ZERO: Operation.EMPTY,
        Action.DUMMY: Operation.DUMMY,
    }[action]


#: Free text of content items and graphic/waveform annotations. Type 1 in their items, so a
#: dummy replaces them (unless a clean option keeps cleaned text).
_CONTENT_TEXT_TAGS = frozenset({0x0040A160, 0x00700006})  # TextValue, UnformattedTextValue


def _strict_operation(
    tag: int, vr: str, keyword: str, options: ProfileOptions, *, retired: bool = False
) -> Operation:
    """hidim's extras for attributes the table does not name (``strict=True``)."""
    if vr == "SQ":
        return Operation.RECURSE
    if tag in _CONTENT_TEXT_TAGS:
        if options.clean_structured_content or options.clean_graphics:
            return Operation.CLEAN_TEXT
        return Operation.DUMMY
    if vr == "UI":
        if tag in CLASS_UID_TAGS or options.retain_uids:
            return Operation.KEEP
        return Operation.REMAP_UID
    if vr == "PN":
        return Operation.EMPTY
    if vr in _TEMPORAL_VRS:
        if options.retain_long_full_dates:
            return Operation.KEEP
        return Operation.SHIFT_TIME if options.retain_long_modified_dates else Operation.REMOVE
    if vr in ("UR", "AE"):
        return Operation.REMOVE
    if vr in _TEXT_VRS and (retired or any(w in keyword for w in _DESCRIPTOR_WORDS)):
        # Free text whose meaning the profile does not pin down: a comment, note, reason,
        # or a retired attribute that no current IOD defines.
        return Operation.CLEAN_TEXT if options.clean_descriptors else Operation.REMOVE
    return Operation.KEEP


@lru_cache(maxsize=8)
def cached_plan(options: ProfileOptions) -> HeaderPlan:
    """:func:`build_plan` memoised per options (worker processes build it once)."""
    return build_plan(options)


def build_plan(
    options: ProfileOptions | None = None, *, table: Iterable[ProfileRow] | None = None
) -> HeaderPlan:
    """Compile Table E.1-1 and ``options`` into the tag→operation plan of the header walk.

    Args:
        options: Profile options (defaults: Basic Profile + modified dates, strict extras).
        table: Rows to use instead of the shipped table (tests, site-specific profiles).

    Returns:
        A :class:`HeaderPlan`; build it once per run and reuse it for every file.
    """
    options = options or ProfileOptions()
    entries, pairs = _dictionary()
    rows = tuple(table) if table is not None else load_table()
    ops: dict[int, Operation] = {}
    sequences = frozenset(t for t, (vr, _) in entries.items() if vr == "SQ")

    if options.strict:
        retired = _retired()
        for tag, (vr, keyword) in entries.items():
            if tag >> 16 in (0x0002, 0xFFFE) or (tag & 0xFFFF) == 0:
                continue
            if "x" in f"{tag:08x}" or vr in ("", "NONE"):
                continue
            op = _strict_operation(
                tag, vr.split(" or ")[0], keyword, options, retired=tag in retired
            )
            if op is not Operation.KEEP:
                ops[tag] = op

    for row in rows:
        row_tag = _tag_int(row.tag)
        if row_tag is None:
            continue  # patterns (50XX, 60XX, private) are structural, see header.py
        vr = entries.get(row_tag, ("", ""))[0].split(" or ")[0]
        action = effective_code(row, options)
        op = _operation(action, vr, options)
        dates_col = row.options.get(OptionColumn.RETAIN_LONG_MODIFIED_DATES)
        if (
            op is Operation.CLEAN_TEXT
            and options.retain_long_modified_dates
            and dates_col is Action.CLEAN
        ):
            # A temporal attribute that is not DA/DT/TM (timezone offset, binary timestamp)
            # cannot be shifted consistently: remove it.
            op = Operation.REMOVE
        if op is Operation.REMOVE and row.in_std_comp_iod and vr not in _BINARY_OR_SQ:
            # X on an attribute of a standard IOD: empty it instead. It carries no
            # information either way, and a Type 2 attribute must stay present to be valid.
            op = Operation.EMPTY
        ops[row_tag] = op

    if options.strict:
        for tag in _STRICT_REMOVALS:
            ops[tag] = Operation.REMOVE

    if options.pseudonymize_ids:
        for tag, op in _PSEUDONYM_TAGS.items():
            if ops.get(tag) in (Operation.EMPTY, Operation.DUMMY, Operation.REMOVE):
                ops[tag] = op

    if options.safe_list is not None:
        ops = _apply_safe_list(ops, options.safe_list, entries)

    dispatch = {t: Operation.RECURSE for t in sequences}
    dispatch.update(ops)
    return HeaderPlan(
        ops=MappingProxyType(ops),
        known_sequences=sequences,
        known_tags=frozenset(entries),
        date_time_pairs=MappingProxyType(dict(pairs)),
        time_date_pairs=MappingProxyType({v: k for k, v in pairs.items()}),
        text_tags=frozenset(
            t for t, (vr, _) in entries.items() if vr.split(" or ")[0] in _TEXT_VRS
        ),
        options=options,
        remove_unknown_public=options.strict or options.safe_list is not None,
        vrs=MappingProxyType(
            {t: vr.split(" or ")[0] for t, (vr, _) in entries.items() if "x" not in f"{t:08x}"}
        ),
        dispatch=dispatch,
    )


# Attributes a valid, de-identified image needs whatever the safe list says; the profile's
# operation (remap, pseudonym, shift) still applies to them.
_ALWAYS_NEEDED = frozenset(
    {
        0x00080005, 0x00080008, 0x00080016, 0x00080018, 0x00080020, 0x00080030, 0x00080050,
        0x00080060, 0x00080090, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00200010,
        0x0020000D, 0x0020000E, 0x00200011, 0x00200013, 0x00280002, 0x00280004, 0x00280006,
        0x00280008, 0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280102, 0x00280103,
        0x00281101, 0x00281102, 0x00281103, 0x00281201, 0x00281202, 0x00281203, 0x00282110,
        0x00282114, 0x7FE00010, 0x00080064, 0x00200020, 0x00280009,
    }
)  # fmt: skip


def _apply_safe_list(
    ops: dict[int, Operation], safe: frozenset[int], entries: Mapping[int, tuple[str, str]]
) -> dict[int, Operation]:
    """Safe-list mode: every tag not listed (or needed for validity) is removed."""
    keep = safe | _ALWAYS_NEEDED
    out: dict[int, Operation] = {}
    for tag in entries:
        if tag in keep:
            if tag in ops:
                out[tag] = ops[tag]
        else:
            out[tag] = Operation.REMOVE
    return out
