"""One patient's visit: render each view, write its DICOM file, return its truth entries.

The unit of work a generation worker runs: everything random comes from the series' own
stream (:func:`~hidim.phantom.render.series_rng`), every identifier from
:mod:`~hidim.phantom.identity`, so a study is the same bytes whichever process writes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hidim.phantom.cohort import PatientRecord
from hidim.phantom.config import PhantomConfig
from hidim.phantom.dicom import SeriesHeader, dataset_bytes, us_multiframe_dataset
from hidim.phantom.geometry import Layout, make_layout
from hidim.phantom.identity import derive_int, derive_uid, person_name
from hidim.phantom.render import plan_series, render_series, series_rng
from hidim.phantom.text import BurnedText, header_rows, render_header
from hidim.phantom.truth import series_truth
from hidim.provenance import atomic_write_bytes

__all__ = ["layout_for", "write_study", "study_folder"]


def layout_for(config: PhantomConfig) -> Layout:
    """The frame layout of a config (header band + sector)."""
    return make_layout(config.size, header_rows(config.text_px))


def _staff(seed: int, kind: str, site_index: int, patient_index: int) -> str:
    k = site_index * 8 + derive_int(seed, f"{kind}-pick", patient_index, 3)
    family, given = person_name(seed, kind, k, "F" if k % 2 else "M")
    return f"{family}^{given}"


def _series_time(study_time: str, minutes: int) -> str:
    t = datetime.strptime(study_time, "%H%M%S") + timedelta(minutes=minutes)
    return t.strftime("%H%M%S")


def study_folder(out: Path, rec: PatientRecord) -> Path:
    """``OUT/dicom/<PatientID>/<StudyDate>_<Accession>`` (PHI in names, as hospital exports)."""
    return out / "dicom" / rec.patient_id / f"{rec.study_date:%Y%m%d}_{rec.accession}"


def write_study(
    rec: PatientRecord, config: PhantomConfig, layout: Layout, out: Path
) -> list[dict[str, Any]]:
    """Render and write every view of ``rec``'s study under ``out``.

    Returns:
        The ``truth.json`` series entries (with identifiers and the file path).
    """
    seed = config.seed
    site = config.site(rec.site)
    site_index = [s.name for s in config.sites].index(rec.site)
    band: np.ndarray | None = None
    burned: list[BurnedText] = []
    if config.burn_in_text:
        band, burned = render_header(
            [
                ("patient_name", f"{rec.family_name}, {rec.given_name}"),
                ("study_date", rec.study_date.isoformat()),
                ("institution", site.institution_display),
            ],
            cols=layout.cols,
            text_px=config.text_px,
        )
    study_uid = derive_uid(seed, "study", rec.index)
    folder = study_folder(out, rec)
    entries = []
    for number, view in enumerate(config.views, start=1):
        rng = series_rng(seed, rec.index, view)
        plan = plan_series(rec, view, config, site, rng)
        pixels = render_series(plan, layout, band, rgb=config.color == "rgb", rng=rng)
        header = SeriesHeader(
            view=view,
            study_uid=study_uid,
            series_uid=derive_uid(seed, f"series-{view}", rec.index),
            sop_uid=derive_uid(seed, f"sop-{view}", rec.index),
            series_number=number,
            series_time=_series_time(rec.study_time, 3 + 4 * number),
            fps=plan.fps,
            operator=_staff(seed, "operator", site_index, rec.index),
            referring=_staff(seed, "referring", site_index, rec.index),
            performing=_staff(seed, "performing", site_index, rec.index),
        )
        ds = us_multiframe_dataset(
            pixels,
            patient=rec,
            site=site,
            header=header,
            layout=layout,
            include_us_region=config.include_us_regions,
            private_tags=config.private_tags,
        )
        path = folder / f"{number:02d}_{view}.dcm"
        atomic_write_bytes(path, dataset_bytes(ds, rle=config.transfer_syntax == "rle"))
        entry = series_truth(
            plan,
            layout,
            ef_percent=rec.ef_true,
            burned=burned,
            channels=3 if pixels.ndim == 4 else 1,
        )
        entry.update(
            series_uid=header.series_uid,
            study_uid=study_uid,
            sop_uid=header.sop_uid,
            patient_id=rec.patient_id,
            site=rec.site,
            series_number=number,
            file=path.relative_to(out).as_posix(),
        )
        entries.append(entry)
    return entries
