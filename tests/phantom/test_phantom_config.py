"""PhantomConfig: validation at the boundary, fingerprints, YAML round trip."""

from __future__ import annotations

import pytest
import yaml

from hidim.errors import PhantomError
from hidim.phantom import PhantomConfig
from hidim.phantom.geometry import primitive_mask


def test_defaults_are_small_and_clean() -> None:
    cfg = PhantomConfig()
    assert cfg.size == 64 and cfg.views == ("A4C", "PLAX")
    eff = cfg.effects
    assert not (eff.site_shift or eff.shortcut or eff.subgroup_bias or eff.ood)
    assert all(30 <= s.fps <= 80 for s in cfg.sites)


def test_fingerprint_identifies_content() -> None:
    assert PhantomConfig(seed=1).fingerprint() == PhantomConfig(seed=1).fingerprint()
    assert PhantomConfig(seed=1).fingerprint() != PhantomConfig(seed=2).fingerprint()


def test_yaml_round_trip() -> None:
    cfg = PhantomConfig(patients=7, seed=3, effects={"shortcut": True}, color="rgb")
    text = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert PhantomConfig.model_validate(yaml.safe_load(text)) == cfg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"views": ("A4C", "A4C")}, "distinct views"),
        ({"effects": {"shortcut_site": "nowhere"}}, "shortcut_site must be one of the sites"),
        (
            {"effects": {"subgroup_bias": True, "subgroup_group": "Z"}},
            "subgroup_group must be one of the ethnicity groups",
        ),
        ({"fps_choices": (24,)}, "fps_choices within 30..80"),
        (
            {"cohort": {"ethnicity_groups": ("A", "B"), "ethnicity_weights": (1.0,)}},
            "one positive weight",
        ),
        ({"patients": 0}, "greater than or equal to 1"),
        ({"unknown_option": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_say_what_is_wrong(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhantomConfig.model_validate(options)


def test_unknown_site_lookup_names_the_sites() -> None:
    with pytest.raises(PhantomError, match="unknown site 'nowhere'; expected one of"):
        PhantomConfig().site("nowhere")


def test_unknown_region_primitive_is_rejected() -> None:
    with pytest.raises(PhantomError, match="unknown region primitive kind 'blob'"):
        primitive_mask({"kind": "blob"}, (4, 4), (4, 4))
