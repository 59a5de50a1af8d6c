"""What the demo builds: the phantom's planted effects and the sizes of the quick/full runs.

Kept apart from the orchestration (:mod:`hidim.workflows.demo`) so the numbers that set the
demo's budget (≤ 2 min ``--quick``, ≤ 10 min full, on 2 CPU cores) are in one place.

The phantom is built so that each planted effect is *learnable and detectable* at this size:

* **Shortcut.** A large referral centre (60 % of patients, 45 % of them with reduced EF)
  stamps a small bright marker on the loops of every patient with EF < 40 %, and its old
  scanner gives such noisy, low-gain images that the heart is barely visible there. A model
  can only tell that site's sick patients by the marker, and learns it: masking the marker
  lowers the test C-index by about 0.2-0.3 (measured over seeds 0 and 1). On clean images
  the same marker is ignored (anatomy carries the same information and more), which is
  why the demo does not plant it there.
* **Subgroup bias.** 70 % of the events of women go unrecorded (censored instead); sex has
  no true effect on risk, so the recorded event-rate gap is the planted bias alone.
* **Signal.** Risk is driven mainly by what the image shows (log-HR -1.0 per 10 EF points,
  0.3 per 10 years of age) in a sicker-than-default cohort (Weibull scale 1300 days), so a
  few hundred patients carry enough events to train on and to audit; 35 % of patients are
  held out for testing so the audit and occlusion tests have power.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DemoSettings",
    "QUICK",
    "FULL",
    "phantom_config",
    "training_config",
    "pretrain_config",
    "explain_options",
    "INTENDED_USE",
    "demo_key",
]

INTENDED_USE = (
    "Demonstration on a synthetic phantom only: predict time to death or heart-failure "
    "admission from an apical four-chamber echo cine loop. Not for clinical use. The phantom "
    "has a planted shortcut (a marker on the loops of sick patients at one site) and planted "
    "under-recording of outcomes in women, which this report should flag."
)


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """Sizes of one demo run.

    Attributes:
        patients: Phantom patients (one A4C cine loop each).
        sector_px: Depth of the phantom's scan sector in pixels (frames are about
            ``1.5 * sector_px`` wide).
        fps: Frame rate every cine loop is resampled to (Hz).
        clip_frames: Frames per training clip.
        epochs: Training epochs of each model (the best validation epoch is kept).
        ensemble: Members of the deep ensemble (uncertainty = their spread).
        widths: Channels of the four stages of the small 3-D CNN.
        baseline: Also train the 2-D-per-frame baseline (ResNet-18 per frame).
        baseline_epochs: Its epochs.
        n_boot: Bootstrap replicates of the audit, OOD and occlusion CIs.
        weibull_scale_days: Scale of the phantom's Weibull event times (smaller: more events).
        beta_ef_per_10, beta_age_per_10, beta_male: The phantom's log-hazard ratios (per 10
            EF points, per 10 years, male); what the image shows (EF) vs what it cannot.
        split_fractions: (train, val, test) patient fractions of the store.
        shortcut_site_share: Share of patients from the site that marks its sick patients.
        shortcut_site_low_ef: Share of that site's patients with reduced EF (all marked).
        noise_sd: Electronic noise of the marker site's images (phantom envelope units; the
            other sites keep the phantom's defaults).
        marker_site_gain: Receive gain of the marker site (lower: the noise drowns more of
            the anatomy; the bright marker stays visible).
        cox_memory: Size of the Cox head's memory bank of recent risk scores (risk sets
            larger than a batch give a steadier ranking loss).
        mc_dropout: Monte-Carlo dropout passes at prediction (uncertainty of a single model).
        pretrain_epochs: Epochs of the supervised pretraining (EF regression on every echo)
            whose video encoder the survival model starts from; 0 trains it from scratch.
        freeze_encoder: Keep the pretrained encoder fixed (train only the Cox head). Off:
            fine-tuning lets the outcome model pick up the marker site's shortcut, which the
            report must catch (frozen, the EF encoder leans on it less and the occlusion
            test misses it for some seeds; see docs/report.md).
    """

    patients: int
    sector_px: int
    fps: float
    clip_frames: int
    epochs: int
    ensemble: int
    widths: tuple[int, int, int, int]
    baseline: bool
    baseline_epochs: int
    n_boot: int
    weibull_scale_days: float = 1300.0
    beta_ef_per_10: float = -1.0
    beta_age_per_10: float = 0.3
    beta_male: float = 0.0
    split_fractions: tuple[float, float, float] = (0.5, 0.15, 0.35)
    shortcut_site_share: float = 0.6
    shortcut_site_low_ef: float = 0.45
    noise_sd: float = 0.5
    marker_site_gain: float = 0.4
    cox_memory: int = 96
    mc_dropout: int = 0
    pretrain_epochs: int = 0
    freeze_encoder: bool = False


QUICK = DemoSettings(
    patients=300,
    sector_px=32,
    fps=25.0,
    clip_frames=16,
    epochs=12,
    ensemble=2,
    widths=(8, 16, 32, 64),
    baseline=False,
    baseline_epochs=0,
    n_boot=200,
    pretrain_epochs=10,
)
FULL = DemoSettings(
    patients=600,
    sector_px=32,
    fps=25.0,
    clip_frames=16,
    epochs=15,
    ensemble=3,
    widths=(8, 16, 32, 64),
    baseline=False,  # opt in with `hidim demo --baseline`: ResNet-18 per frame costs ~10 min
    baseline_epochs=4,
    n_boot=1000,
    pretrain_epochs=15,
)


def demo_key(seed: int) -> bytes:
    """The demo's de-identification key, derived from its seed (32 bytes).

    A real project draws its key at random once and keeps it (the pseudonyms, store keys and
    patient-level splits all follow from it). The demo's phantom holds no real PHI, so its key
    is a function of the seed: two demos with one seed then give identical results.
    """
    import hashlib

    return hashlib.sha256(f"hidim demo phantom key\x00{int(seed)}".encode()).digest()


def phantom_config(settings: DemoSettings, seed: int) -> Any:
    """The phantom: multi-site, with PHI, a shortcut, under-recorded outcomes and OOD inputs."""
    from hidim.phantom.config import DEFAULT_SITES, CohortConfig, EffectsConfig, PhantomConfig

    marker_site = "northgate"
    others = (1.0 - settings.shortcut_site_share) / (len(DEFAULT_SITES) - 1)
    sites = tuple(
        s.model_copy(
            update={
                "weight": settings.shortcut_site_share if s.name == marker_site else others,
                "low_ef_fraction": (
                    settings.shortcut_site_low_ef if s.name == marker_site else s.low_ef_fraction
                ),
                "noise_sd": settings.noise_sd if s.name == marker_site else s.noise_sd,
                "gain": settings.marker_site_gain if s.name == marker_site else s.gain,
            }
        )
        for s in DEFAULT_SITES
    )
    return PhantomConfig(
        patients=settings.patients,
        seed=seed,
        size=settings.sector_px,
        views=("A4C",),
        sites=sites,
        cohort=CohortConfig(
            weibull_scale_days=settings.weibull_scale_days,
            beta_ef_per_10=settings.beta_ef_per_10,
            beta_age_per_10=settings.beta_age_per_10,
            beta_male=settings.beta_male,
        ),
        effects=EffectsConfig(
            site_shift=True,
            shortcut=True,
            shortcut_site=marker_site,
            shortcut_p_positive=1.0,
            shortcut_p_negative=0.0,
            subgroup_bias=True,
            subgroup_attribute="sex",
            subgroup_group="F",
            subgroup_miss_fraction=0.7,
            ood=True,
        ),
    )


def pretrain_config(settings: DemoSettings, store: Path, seed: int) -> Any:
    """Supervised pretraining: the same small video model regressing EF (every echo has one)."""
    from hidim.training.config import config_from_dict

    raw = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": settings.clip_frames,
            "batch_size": 8,
            "target": "ef",
        },
        "model": {
            "backbone": "small3d",
            "backbone_kwargs": {"widths": list(settings.widths), "dropout": 0.1},
        },
        "task": {"head": "regression"},
        "optim": {"lr": 3e-3, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": settings.pretrain_epochs,
            "seed": seed,
            "early_stopping_patience": settings.pretrain_epochs,
            "loggers": ["csv"],
            "progress_bar": False,
        },
    }
    return config_from_dict(raw)


def training_config(
    settings: DemoSettings,
    store: Path,
    seed: int,
    *,
    baseline: bool = False,
    init_from: Path | None = None,
) -> Any:
    """The training config: a small video model (or the 2-D baseline) with a Cox head,
    its encoder started from the pretraining run ``init_from`` when given."""
    from hidim.training.config import config_from_dict

    model: dict[str, Any] = {
        "backbone": "small3d",
        "backbone_kwargs": {"widths": list(settings.widths), "dropout": 0.1},
    }
    if init_from is not None and not baseline:
        model.update(init_from=str(init_from), freeze_encoder=settings.freeze_encoder)
    if baseline:
        model = {"backbone": "resnet18_2d", "backbone_kwargs": {"pooling": "mean"}}
    raw = {
        "data": {
            "store": str(store),
            "views": ["A4C"],
            "clip_frames": settings.clip_frames,
            "batch_size": 8,
            "balanced_batches": "events",
            "min_events": 2,
            "group_columns": ["sex", "site"],
        },
        "model": model,
        "task": {"head": "cox", "params": {"memory_size": settings.cox_memory}},
        "optim": {"lr": 3e-3, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": settings.baseline_epochs if baseline else settings.epochs,
            "seed": seed,
            "early_stopping_patience": settings.epochs,
            "loggers": ["csv"],
            "progress_bar": False,
        },
        "uncertainty": {"coverage": 0.9, "mc_dropout_samples": settings.mc_dropout},
    }
    return config_from_dict(raw)


def explain_options(settings: DemoSettings, seed: int) -> Any:
    """What the explain stage runs (fewer methods and bootstrap replicates when quick)."""
    from hidim.explain import ExplainRunOptions

    quick = settings.n_boot < 1000
    return ExplainRunOptions(
        methods=("gradcam",) if quick else ("gradcam", "integrated_gradients"),
        n_cases=4,
        n_boot=settings.n_boot,
        grid=None if quick else (3, 3),
        sanity_clips=2 if quick else 4,
        sanity_steps=3 if quick else 4,
        seed=seed,
        progress=True,
    )
