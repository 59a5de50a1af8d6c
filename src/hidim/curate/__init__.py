"""hidim.curate — DICOM → store: normalisation, patient-level splits, label/annotation import.

Public API (see ``docs/curate.md``)::

    from hidim.curate import curate, import_labels, import_mdai

    result = curate(["/data/deid"], "/data/store", fps=30, workers=4)
    import_labels("/data/store", "outcomes.csv", id_map="/secure/reid.csv")
    import_mdai("/data/store", "mdai_export.json", id_map="/secure/reid.csv")
"""

from hidim.curate.labels import LabelImportResult, import_labels, validate_labels
from hidim.curate.mdai import AnnotationImportResult, import_mdai
from hidim.curate.normalise import (
    intensity_parameters,
    parse_intensity,
    resample_fps,
    resize_keep_aspect,
)
from hidim.curate.pipeline import CurateResult, curate
from hidim.curate.splits import assign_splits, check_no_leakage, resplit_store, split_manifest

__all__ = [
    "AnnotationImportResult",
    "CurateResult",
    "LabelImportResult",
    "assign_splits",
    "check_no_leakage",
    "curate",
    "import_labels",
    "import_mdai",
    "intensity_parameters",
    "parse_intensity",
    "resample_fps",
    "resize_keep_aspect",
    "resplit_store",
    "split_manifest",
    "validate_labels",
]
