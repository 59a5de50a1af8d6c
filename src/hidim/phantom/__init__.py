"""hidim.phantom: a synthetic multi-site echocardiography cohort with known ground truth.

The phantom is hidim's built-in data (``hidim demo``) and the test bed whose truth is known:
real Ultrasound Multi-frame DICOM files with PHI in headers and pixels, ``labels.csv`` in
the form ``hidim labels import`` reads, and ``truth.json`` with every generating parameter,
per-patient true outcomes and risk, and per-series frame phases, LV areas and named regions.
Planted effects (site shift, shortcut marker, subgroup under-diagnosis, OOD inputs) are
off by default. It is not a substitute for clinical validation; see ``docs/phantom.md``.

Typical use::

    from hidim.phantom import PhantomConfig, generate, load_truth, region_mask

    result = generate("phantom", PhantomConfig(patients=100, seed=1))
    truth = load_truth(result.truth_path)
    entry = truth.series_for(patient_id, "A4C")
    mask = region_mask(entry, "lv_cavity", shape=(112, 112))
"""

from hidim.phantom.cohort import Cohort, PatientRecord, sample_cohort, weibull_survival
from hidim.phantom.config import (
    DEFAULT_SITES,
    VIEWS,
    CohortConfig,
    EffectsConfig,
    PhantomConfig,
    SiteConfig,
)
from hidim.phantom.cycle import cardiac_phase, cycle_position, relative_volume
from hidim.phantom.generate import LABEL_COLUMNS, PhantomResult, generate, layout_for
from hidim.phantom.ood import OOD_KINDS, ood_arrays
from hidim.phantom.truth import (
    TRUTH_FORMAT,
    Truth,
    ef_from_area_ratio,
    load_truth,
    region_mask,
    region_names,
)

__all__ = [
    "PhantomConfig",
    "SiteConfig",
    "CohortConfig",
    "EffectsConfig",
    "DEFAULT_SITES",
    "VIEWS",
    "generate",
    "PhantomResult",
    "LABEL_COLUMNS",
    "layout_for",
    "sample_cohort",
    "Cohort",
    "PatientRecord",
    "weibull_survival",
    "cardiac_phase",
    "cycle_position",
    "relative_volume",
    "region_mask",
    "region_names",
    "ef_from_area_ratio",
    "Truth",
    "load_truth",
    "TRUTH_FORMAT",
    "ood_arrays",
    "OOD_KINDS",
]
