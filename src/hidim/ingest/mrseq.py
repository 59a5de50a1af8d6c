"""MR sequence class (T1 / T2 / FLAIR / DWI / other / unknown) from header evidence.

Two independent sources of evidence are weighed:

1. **Physics** — ScanningSequence (SE/GR/IR/EP), SequenceVariant, repetition time (TR),
   echo time (TE), inversion time (TI), flip angle and diffusion b-values.
2. **Naming** — SeriesDescription (ProtocolName when empty), matched on whole tokens
   (``t1``, ``t2w``, ``mprage``, ``flair``, ``dwi``, ``t2*``, ``localizer``...).

Rules (times in ms):

* any diffusion b-value > 0 → ``DWI`` (it overrides everything else);
* inversion recovery with TI ≥ 1500 (and TR ≥ 4000 when known) → ``FLAIR``; TI 100–250 (STIR)
  → ``other``; TI 300–1300 with TR < 3500 (MPRAGE, T1-FLAIR, IR-SE T1) → ``T1``;
* spin echo: TR < 1000 and TE < 30 → ``T1``; TR ≥ 2000 and TE ≥ 70 → ``T2``;
  TR ≥ 2000 and TE < 40 (proton density) → ``other``;
* gradient echo: TR < 50, TE < 10, flip ≥ 8° → ``T1``; TE ≥ 15 with flip ≤ 30° (T2*) → ``other``.

When naming and physics both give a class and disagree the answer is ``unknown``; when only
one gives a class it is used; when neither does it is ``unknown``. ``T1 FLAIR`` (a
T1-weighted inversion-recovery sequence) is ``T1``, as in the BraTS convention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from pydicom.dataset import Dataset

from hidim.ingest.dsutil import find_in_groups, functional_group_item, get_floats, get_str

__all__ = ["MRSequence", "classify_mr_sequence", "mr_evidence", "diffusion_b_values"]


class MRSequence(StrEnum):
    """MR sequence classes; the values are what the manifest stores."""

    T1 = "T1"
    T2 = "T2"
    FLAIR = "FLAIR"
    DWI = "DWI"
    OTHER = "other"
    UNKNOWN = "unknown"


def _token(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])")


# Order matters only for readability: every class is tested and conflicts give None.
_NAME_PATTERNS: dict[MRSequence, tuple[re.Pattern[str], ...]] = {
    MRSequence.DWI: tuple(
        _token(p)
        for p in (
            r"dwi",
            r"diff(?:usion)?",
            r"dti",
            r"adc",
            r"trace(?:w)?",
            r"ep2d diff",
            r"resolve",
            r"b\d{3,4}",
        )
    ),
    MRSequence.FLAIR: tuple(_token(p) for p in (r"flair", r"dark ?fluid", r"da fl")),
    MRSequence.OTHER: tuple(
        _token(p)
        for p in (
            r"t2 ?\*",
            r"t2 ?star",
            r"swi",
            r"swan",
            r"t[12] ?map(?:ping)?",
            r"molli",
            r"shmolli",
            r"locali[sz]er",
            r"scout",
            r"survey",
            r"tof",
            r"mra",
            r"angio",
            r"stir",
            r"asl",
            r"pcasl",
            r"perfusion",
            r"pwi",
            r"field ?map",
            r"spectro(?:scopy)?",
            r"bold",
            r"fmri",
            r"pd(?:w)?",
            r"proton density",
            r"cine",
            r"trufi",
            r"ssfp",
            r"fiesta",
        )
    ),
    MRSequence.T1: tuple(
        _token(p)
        for p in (
            r"t1(?:w|wi)?",
            r"mp ?rage",
            r"f?spgr",
            r"bravo",
            r"vibe",
            r"flash",
            r"lava",
            r"thrive",
            r"tfl",
        )
    ),
    MRSequence.T2: tuple(_token(p) for p in (r"t2(?:w|wi)?", r"haste", r"ssfse")),
}


def _normalise_name(text: str) -> str:
    # Separators become spaces, "*" survives for T2*; digits and letters stay.
    return re.sub(r"[^a-z0-9*+]+", " ", text.lower()).strip()


def class_from_name(description: str | None) -> MRSequence | None:
    """Class suggested by a series description, or ``None`` when absent or ambiguous."""
    if not description:
        return None
    text = _normalise_name(description)
    hits = {
        cls for cls, patterns in _NAME_PATTERNS.items() if any(p.search(text) for p in patterns)
    }
    if MRSequence.DWI in hits:
        return MRSequence.DWI
    if MRSequence.FLAIR in hits:
        return MRSequence.T1 if MRSequence.T1 in hits else MRSequence.FLAIR
    if MRSequence.OTHER in hits:
        # "t2 star" also matches the T2 token; the more specific "other" wins.
        return MRSequence.OTHER
    if len(hits) == 1:
        return next(iter(hits))
    return None


def class_from_physics(
    *,
    scanning_sequence: Iterable[str] = (),
    tr_ms: float | None = None,
    te_ms: float | None = None,
    ti_ms: float | None = None,
    flip_angle_deg: float | None = None,
    b_values: Iterable[float] = (),
) -> MRSequence | None:
    """Class implied by acquisition parameters, or ``None`` when they do not decide it."""
    if any(b > 0 for b in b_values):
        return MRSequence.DWI
    seq = {s.upper() for s in scanning_sequence}
    if "IR" in seq or ti_ms is not None:
        if ti_ms is None:
            return None
        if ti_ms >= 1500 and (tr_ms is None or tr_ms >= 4000):
            return MRSequence.FLAIR
        if 100 <= ti_ms <= 250:
            return MRSequence.OTHER
        if 300 <= ti_ms <= 1300 and (tr_ms is None or tr_ms < 3500):
            return MRSequence.T1
        return None
    if tr_ms is None or te_ms is None:
        return None
    if "EP" in seq:
        return None  # EPI without b-values: fMRI, perfusion or DWI with private b-values
    if "GR" in seq and "SE" not in seq:
        if tr_ms < 50 and te_ms < 10 and flip_angle_deg is not None and flip_angle_deg >= 8:
            return MRSequence.T1
        if te_ms >= 15 and flip_angle_deg is not None and flip_angle_deg <= 30:
            return MRSequence.OTHER
        return None
    if tr_ms < 1000 and te_ms < 30:
        return MRSequence.T1
    if tr_ms >= 2000 and te_ms >= 70:
        return MRSequence.T2
    if tr_ms >= 2000 and te_ms < 40:
        return MRSequence.OTHER
    return None


def classify_mr_sequence(
    *,
    scanning_sequence: Iterable[str] = (),
    tr_ms: float | None = None,
    te_ms: float | None = None,
    ti_ms: float | None = None,
    flip_angle_deg: float | None = None,
    b_values: Iterable[float] = (),
    description: str | None = None,
) -> MRSequence:
    """Combine naming and physics evidence into one class (see the module docstring).

    Args:
        scanning_sequence: ScanningSequence values, e.g. ``("SE", "IR")``.
        tr_ms: RepetitionTime in ms.
        te_ms: EchoTime in ms.
        ti_ms: InversionTime in ms.
        flip_angle_deg: FlipAngle in degrees.
        b_values: diffusion b-values (s/mm²) seen in the series.
        description: SeriesDescription (or ProtocolName).

    Returns:
        The class; ``MRSequence.UNKNOWN`` when unsure.
    """
    b_values = tuple(b_values)
    physics = class_from_physics(
        scanning_sequence=scanning_sequence,
        tr_ms=tr_ms,
        te_ms=te_ms,
        ti_ms=ti_ms,
        flip_angle_deg=flip_angle_deg,
        b_values=b_values,
    )
    if physics is MRSequence.DWI:
        return physics
    name = class_from_name(description)
    if name is not None and physics is not None:
        return name if name is physics else MRSequence.UNKNOWN
    return name or physics or MRSequence.UNKNOWN


_SIEMENS_B = re.compile(r"ep_b(\d+)")


def diffusion_b_values(ds: Dataset) -> tuple[float, ...]:
    """Diffusion b-values (s/mm²) in one dataset: standard, Enhanced and vendor attributes.

    Reads DiffusionBValue (top level and MRDiffusionSequence), the Siemens SequenceName
    convention ``*ep_b1000t`` and the Siemens / GE private b-value elements.
    """
    found: list[float] = []
    b = find_in_groups(ds, "DiffusionBValue", ("MRDiffusionSequence",))
    if b is not None:
        found.append(b)
    n_frames = len(ds.get("PerFrameFunctionalGroupsSequence") or ())
    for frame in range(n_frames):
        values = get_floats(
            functional_group_item(ds, "MRDiffusionSequence", frame), "DiffusionBValue"
        )
        if values:
            found.extend(values)
    name = get_str(ds, "SequenceName")
    if name and (m := _SIEMENS_B.search(name.lower())):
        found.append(float(m.group(1)))
    for group, creator, offset in (
        (0x0019, "SIEMENS MR HEADER", 0x0C),
        (0x0043, "GEMS_PARM_01", 0x39),
    ):
        try:
            value = ds.private_block(group, creator)[offset].value
        except (KeyError, ValueError, TypeError, IndexError):
            continue
        number = _first_number(value)
        if number is None:
            continue
        found.append(number % 1e9 if group == 0x0043 else number)
    return tuple(found)


def _first_number(value: object) -> float | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore").split("\\")[0]
    elif not isinstance(value, str) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None  # type: ignore[arg-type, index]
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def mr_evidence(ds: Dataset) -> dict[str, object]:
    """Keyword arguments for :func:`classify_mr_sequence` read from one MR dataset."""
    scanning = (get_str(ds, "ScanningSequence") or "").split("\\")
    scanning = [s for s in scanning if s]
    pulse = get_str(ds, "EchoPulseSequence")  # Enhanced MR: SPIN / GRADIENT / BOTH
    if pulse in ("SPIN", "BOTH"):
        scanning.append("SE")
    if pulse in ("GRADIENT", "BOTH"):
        scanning.append("GR")
    if get_str(ds, "InversionRecovery") == "YES":
        scanning.append("IR")
    ti = get_floats(ds, "InversionTime") or get_floats(
        functional_group_item(ds, "MRModifierSequence"), "InversionTimes"
    )
    te = find_in_groups(ds, "EchoTime", ()) or find_in_groups(
        ds, "EffectiveEchoTime", ("MREchoSequence",)
    )
    return {
        "scanning_sequence": tuple(scanning),
        "tr_ms": find_in_groups(ds, "RepetitionTime", ("MRTimingAndRelatedParametersSequence",)),
        "te_ms": te,
        "ti_ms": ti[0] if ti else None,
        "flip_angle_deg": find_in_groups(
            ds, "FlipAngle", ("MRTimingAndRelatedParametersSequence",)
        ),
        "b_values": diffusion_b_values(ds),
        "description": get_str(ds, "SeriesDescription") or get_str(ds, "ProtocolName"),
    }
