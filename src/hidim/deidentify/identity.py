"""Attributes that say how an instance was de-identified (PS3.15 E.1.1, PS3.3 C.7.1.1).

``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` (text) and
``DeidentificationMethodCodeSequence`` with one CID 7050 code per profile and option used
(codes from pydicom's DCM dictionary), ``LongitudinalTemporalInformationModified``
(``MODIFIED`` when dates were shifted, ``UNMODIFIED`` when kept, ``REMOVED`` otherwise), and
``BurnedInAnnotation = NO`` only when pixels were actually cleaned.
"""

from __future__ import annotations

from functools import lru_cache

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag

from hidim import __version__
from hidim.deidentify.profile import ProfileOptions

__all__ = ["method_codes", "mark_deidentified"]


def method_codes(options: ProfileOptions, *, pixels_cleaned: bool) -> list[tuple[str, str]]:
    """``(code value, code meaning)`` of CID 7050 for the profile and options in use."""
    return list(_method_codes(options, pixels_cleaned))


@lru_cache(maxsize=16)
def _method_codes(options: ProfileOptions, pixels_cleaned: bool) -> tuple[tuple[str, str], ...]:
    dcm = codes.DCM
    chosen = [dcm.BasicApplicationConfidentialityProfile]
    if pixels_cleaned:
        chosen.append(dcm.CleanPixelDataOption)
    flags = [
        (options.clean_graphics, dcm.CleanGraphicsOption),
        (options.clean_structured_content, dcm.CleanStructuredContentOption),
        (options.clean_descriptors, dcm.CleanDescriptorsOption),
        (options.retain_long_full_dates, dcm.RetainLongitudinalTemporalInformationFullDatesOption),
        (
            options.retain_long_modified_dates,
            dcm.RetainLongitudinalTemporalInformationModifiedDatesOption,
        ),
        (options.retain_patient_characteristics, dcm.RetainPatientCharacteristicsOption),
        (options.retain_device_identity, dcm.RetainDeviceIdentityOption),
        (options.retain_uids, dcm.RetainUidsOption),
        (options.retain_safe_private, dcm.RetainSafePrivateOption),
        (options.retain_institution_identity, dcm.RetainInstitutionIdentityOption),
    ]
    chosen.extend(code for on, code in flags if on)
    return tuple((c.value, c.meaning) for c in chosen)


def mark_deidentified(ds: Dataset, options: ProfileOptions, *, pixels_cleaned: bool) -> None:
    """Add the de-identification attributes to ``ds`` (top level, in place)."""
    put = ds._dict.__setitem__  # tags are fixed and valid: skip keyword lookups
    put(BaseTag(0x00120062), DataElement(0x00120062, "CS", "YES"))  # PatientIdentityRemoved
    items = []
    for value, meaning in _method_codes(options, pixels_cleaned):
        item = Dataset()
        item._dict.update(
            {
                BaseTag(0x00080100): DataElement(0x00080100, "SH", value),
                BaseTag(0x00080102): DataElement(0x00080102, "SH", "DCM"),
                BaseTag(0x00080104): DataElement(0x00080104, "LO", meaning),
            }
        )
        items.append(item)
    # DeidentificationMethodCodeSequence
    put(BaseTag(0x00120064), DataElement(0x00120064, "SQ", Sequence(items)))
    method = [f"hidim {__version__}", "PS3.15 E.1-1 Basic Profile"]
    if options.safe_list is not None:
        method.append("safe-list mode")
    if pixels_cleaned:
        method.append("burned-in text masked")
    put(BaseTag(0x00120063), DataElement(0x00120063, "LO", method))  # DeidentificationMethod
    if options.retain_long_modified_dates:
        temporal = "MODIFIED"
    elif options.retain_long_full_dates:
        temporal = "UNMODIFIED"
    else:
        temporal = "REMOVED"
    # LongitudinalTemporalInformationModified
    put(BaseTag(0x00280303), DataElement(0x00280303, "CS", temporal))
    if pixels_cleaned:
        put(BaseTag(0x00280301), DataElement(0x00280301, "CS", "NO"))  # BurnedInAnnotation
