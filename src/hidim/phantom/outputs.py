"""The phantom's tables: ``labels.csv`` (what a hospital would record) and ``truth.json``.

``truth.json`` is streamed (patients from the cohort arrays, series from the per-chunk
fragments), so writing it never needs the whole cohort's per-frame truth in memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hidim.phantom.anatomy import BLOOD_LEVEL, MARKER_POSITION, TISSUE_LEVEL, WALL_LEVEL
from hidim.phantom.cohort import Cohort
from hidim.phantom.config import PhantomConfig
from hidim.phantom.geometry import Layout
from hidim.phantom.identity import derive_uid
from hidim.phantom.render import ATTENUATION, DYNAMIC_RANGE_DB, SPECKLE_CORRELATION, SYSTOLE_S
from hidim.phantom.truth import TRUTH_FORMAT
from hidim.provenance import atomic_write_text

__all__ = ["LABEL_COLUMNS", "parameters", "summary", "write_outputs"]

LABEL_COLUMNS = (
    "patient_id",
    "study_uid",
    "ef",
    "ef_lt_40",
    "time",
    "event",
    "age",
    "sex",
    "ethnicity",
    "site",
    "income",
)


@contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    """Stream text into ``path`` atomically (temporary file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parameters(config: PhantomConfig, layout: Layout) -> dict[str, Any]:
    """Every generating parameter, the models' formulas and the planted effects."""
    co, eff = config.cohort, config.effects
    return {
        "config": config.model_dump(mode="json"),
        "fingerprint": config.fingerprint(),
        "survival_model": {
            "family": "Weibull proportional hazards",
            "hazard": "h(t) = (k/s) (t/s)^(k-1) exp(eta)",
            "eta": "beta_ef_per_10*(EF-55)/10 + beta_age_per_10*(age-60)/10 + beta_male*male",
            "shape_k": co.weibull_shape,
            "scale_s_days": co.weibull_scale_days,
            "beta_ef_per_10": co.beta_ef_per_10,
            "beta_age_per_10": co.beta_age_per_10,
            "beta_male": co.beta_male,
            "censoring": "min(exponential loss to follow-up, administrative at data_lock)",
            "random_censoring_per_year": co.random_censoring_per_year,
            "data_lock": co.data_lock.isoformat(),
        },
        "label": "ef_lt_40 = EF < 40 %",
        "image_model": {
            "frame_rows": layout.rows,
            "frame_cols": layout.cols,
            "header_rows": layout.header_rows,
            "sector": layout.sector_primitive(),
            "us_region": list(layout.region_box()),
            "cm_per_px": layout.cm_per_px,
            "lv_area_ef_relation": "EF = 1 - (A_ES/A_ED)^(3/2) (semi-axes scale with V^(1/3))",
            "systole_s": SYSTOLE_S,
            "systolic_fraction": "min(0.5, systole_s * HR / 60)",
            "levels": {"tissue": TISSUE_LEVEL, "myocardium": WALL_LEVEL, "blood": BLOOD_LEVEL},
            "dynamic_range_db": DYNAMIC_RANGE_DB,
            "speckle_temporal_correlation": SPECKLE_CORRELATION,
            "attenuation_per_radius": ATTENUATION,
        },
        "effects": {
            "site_shift": {
                "active": eff.site_shift,
                "sites": {
                    s.name: {"fps": s.fps, "gain": s.gain, "noise_sd": s.noise_sd, "tint": s.tint}
                    for s in config.sites
                },
                "pooled_when_inactive": {
                    "fps_choices": config.fps_choices,
                    "gain": 1.0,
                    "noise_sd": 0.04,
                },
            },
            "shortcut": {
                "active": eff.shortcut,
                "site": config.shortcut_site,
                "correlated_with": "true ef_lt_40",
                "p_marker_if_positive": eff.shortcut_p_positive,
                "p_marker_if_negative": eff.shortcut_p_negative,
                "marker_position_normalised": MARKER_POSITION,
                "marker_level": 255,
            },
            "subgroup_bias": {
                "active": eff.subgroup_bias,
                "attribute": eff.subgroup_attribute,
                "group": eff.subgroup_group,
                "miss_fraction": eff.subgroup_miss_fraction,
                "mechanism": "true positives recorded with EF drawn from [40, 52) and label 0; "
                "true events recorded as censored at the same time",
            },
            "ood": {"active": eff.ood, "kinds": ["ct_volume", "natural_clip", "noise", "blank"]},
            "cardiac_phase": {"active": True, "where": "series[*].phase, ed_frames, es_frames"},
        },
    }


def summary(config: PhantomConfig, cohort: Cohort) -> dict[str, Any]:
    """Counts for display: patients per site, labels and events (true / recorded), effects."""
    n = len(cohort)
    eff = config.effects
    return {
        "patients_per_site": {
            s.name: int((cohort.site == k).sum()) for k, s in enumerate(config.sites)
        },
        "ef_lt_40_true": int(cohort.label_true.sum()),
        "ef_lt_40_recorded": int(cohort.label_recorded.sum()),
        "events_true": int(cohort.event_true.sum()),
        "events_recorded": int(cohort.event_recorded.sum()),
        "median_time_days": float(sorted(cohort.time.tolist())[n // 2]),
        "shortcut_series": int(cohort.shortcut.sum()) * len(config.views),
        "effects": {
            "site_shift": eff.site_shift,
            "shortcut": f"at {config.shortcut_site}" if eff.shortcut else False,
            "subgroup_bias": (
                f"{eff.subgroup_attribute}={eff.subgroup_group}, miss {eff.subgroup_miss_fraction:.0%}"
                if eff.subgroup_bias
                else False
            ),
            "ood": eff.ood,
        },
    }


def _patient_truth(
    cohort: Cohort, i: int, series: dict[str, str], study_uid: str
) -> dict[str, Any]:
    rec = cohort.record(i)
    return {
        "index": i,
        "study_uid": study_uid,
        "series": series,
        "site": rec.site,
        "sex": rec.sex,
        "age": rec.age,
        "ethnicity": rec.ethnicity,
        "income": rec.income,
        "heart_rate_bpm": rec.hr_bpm,
        "true_ef": rec.ef_true,
        "recorded_ef": rec.ef_recorded,
        "true_ef_lt_40": rec.label_true,
        "recorded_ef_lt_40": rec.label_recorded,
        "true_risk": round(rec.true_risk, 6),
        "true_event_time": round(rec.event_time_true, 2),
        "time": rec.time,
        "true_event": rec.event_true,
        "recorded_event": rec.event_recorded,
        "label_missed": rec.label_missed,
        "event_missed": rec.event_missed,
        "shortcut": rec.shortcut,
    }


def write_outputs(
    out: Path,
    config: PhantomConfig,
    cohort: Cohort,
    layout: Layout,
    *,
    parts: Path,
    done_chunks: list[int],
    chunk_size: int,
    ood: list[dict[str, Any]],
) -> tuple[int, int]:
    """Write ``labels.csv`` and ``truth.json`` for the patients of the completed chunks.

    Args:
        out: The phantom folder.
        config: The phantom configuration.
        cohort: The sampled cohort.
        layout: Frame layout.
        parts: Folder of the per-chunk truth fragments (``chunk-<index>.json``).
        done_chunks: Indices of the chunks whose files were all written.
        chunk_size: Patients per chunk.
        ood: Truth entries of the OOD inputs.

    Returns:
        ``(patients written, series written)``.
    """
    ok_patients = [
        i
        for c in done_chunks
        for i in range(c * chunk_size, min((c + 1) * chunk_size, len(cohort)))
    ]
    seed = config.seed
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for i in ok_patients:
        rec = cohort.record(i)
        writer.writerow(
            [
                rec.patient_id,
                derive_uid(seed, "study", i),
                f"{rec.ef_recorded:.1f}",
                rec.label_recorded,
                f"{rec.time:.1f}",
                rec.event_recorded,
                rec.age,
                rec.sex,
                rec.ethnicity,
                rec.site,
                rec.income,
            ]
        )
    atomic_write_text(out / "labels.csv", buffer.getvalue())

    n_series = 0
    with _atomic_text(out / "truth.json") as fh:
        fh.write('{"format": ' + json.dumps(TRUTH_FORMAT))
        fh.write(', "parameters": ' + json.dumps(parameters(config, layout)))
        fh.write(', "patients": {')
        for k, i in enumerate(ok_patients):
            series: dict[str, str] = {
                str(v): derive_uid(seed, f"series-{v}", i) for v in config.views
            }
            entry = _patient_truth(cohort, i, series, derive_uid(seed, "study", i))
            fh.write(("," if k else "") + json.dumps(cohort.record(i).patient_id) + ": ")
            fh.write(json.dumps(entry))
        fh.write('}, "series": {')
        index: dict[str, str] = {}
        for c in done_chunks:
            for entry in json.loads((parts / f"chunk-{c:07d}.json").read_text(encoding="utf-8")):
                fh.write(("," if n_series else "") + json.dumps(entry["series_uid"]) + ": ")
                fh.write(json.dumps(entry, separators=(",", ":")))
                index[f"{entry['patient_id']}/{entry['view']}"] = entry["series_uid"]
                n_series += 1
        fh.write('}, "series_by_patient_view": ' + json.dumps(index))
        fh.write(', "ood": ' + json.dumps(ood) + "}")
    return len(ok_patients), n_series
