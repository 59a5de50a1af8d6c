"""Attributes that say how an instance was de-identified (PS3.15 E.1.1, PS3.3 C.7.1.1).

``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` (text) and
``DeidentificationMethodCodeSequence`` with one CID 7050 code per profile and option used
(codes from pydicom's DCM dictionary), ``LongitudinalTemporalInformationModified``
(``MODIFIED`` when dates were shifted, ``UNMODIFIED`` when kept, ``REMOVED`` otherwise), and
``BurnedInAnnotation = NO`` only when pixels were actually cleaned.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from hidim import __version__
from hidim.deidentify.profile import ProfileOptions

__all__ = ["method_codes", "mark_deidentified"]


def method_codes(options: ProfileOptions, *, pixels_cleaned: bool) -> list[tuple[str, str]]:
    """``(code value, code meaning)`` of CID 7050 for the profile and options in use."""
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
    return [(c.value, c.meaning) for c in chosen]


def mark_deidentified(ds: Dataset, options: ProfileOptions, *, pixels_cleaned: bool) -> None:
    """Add the de-identification attributes to ``ds`` (top level, in place)."""
    ds.PatientIdentityRemoved = "YES"
    items = []
    for value, meaning in method_codes(options, pixels_cleaned=pixels_cleaned):
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    method = [f"hidim {__version__}", "PS3.15 E.1-1 Basic Profile"]
    if options.safe_list is not None:
        method.append("safe-list mode")
    if pixels_cleaned:
        method.append("burned-in text masked")
    ds.DeidentificationMethod = method
    if options.retain_long_modified_dates:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    elif options.retain_long_full_dates:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
    if pixels_cleaned:
        ds.BurnedInAnnotation = "NO"
