"""Table E.1-1 as data: completeness, faithfulness to pydicom's dictionary, option rules."""

from __future__ import annotations

import re

import pytest
from pydicom.datadict import dictionary_description, dictionary_has_tag

from hidim.deidentify.profile import (
    Action,
    Operation,
    OptionColumn,
    ProfileOptions,
    build_plan,
    effective_code,
    load_table,
    resolve_combined,
)
from hidim.errors import ConfigError


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def test_deid_table_is_complete_and_matches_the_dictionary() -> None:
    rows = load_table()
    assert len(rows) >= 450
    tags = [r.tag for r in rows]
    assert len(tags) == len(set(tags))
    for must in (
        "(0010,0010)",
        "(0010,0020)",
        "(0020,000D)",
        "(0008,1140)",
        "(60XX,3000)",
        "(50XX,XXXX)",
        "(GGGG,EEEE)",
        "(0088,0200)",
        "(0040,A730)",
    ):
        assert must in tags
    for row in rows:
        m = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", row.tag)
        if m is None:
            continue
        tag = int(m.group(1) + m.group(2), 16)
        assert dictionary_has_tag(tag), row.tag
        assert _norm(dictionary_description(tag)) == _norm(row.name), row.tag


def test_deid_combined_codes_resolve_to_valid_non_identifying_actions() -> None:
    assert resolve_combined(Action.X_Z) is Action.ZERO
    assert resolve_combined(Action.X_D) is Action.DUMMY
    assert resolve_combined(Action.Z_D) is Action.DUMMY
    assert resolve_combined(Action.X_Z_D) is Action.DUMMY
    assert resolve_combined(Action.X_Z_U) is Action.UID
    assert resolve_combined(Action.REMOVE) is Action.REMOVE
    with pytest.raises(ConfigError, match="PS3.15 action code"):
        Action.coerce("Q")


def test_deid_options_override_the_basic_profile() -> None:
    rows = {r.keyword: r for r in load_table() if r.keyword}
    basic = ProfileOptions(retain_long_modified_dates=False)
    assert effective_code(rows["PatientAge"], basic) is Action.REMOVE
    chars = ProfileOptions(retain_patient_characteristics=True)
    assert effective_code(rows["PatientAge"], chars) is Action.KEEP
    assert effective_code(rows["DeviceSerialNumber"], basic) is Action.DUMMY
    dev = ProfileOptions(retain_device_identity=True)
    assert effective_code(rows["DeviceSerialNumber"], dev) is Action.KEEP
    assert effective_code(rows["StudyDate"], ProfileOptions()) is Action.CLEAN
    assert rows["StudyDate"].options[OptionColumn.RETAIN_LONG_FULL_DATES] is Action.KEEP


def test_deid_plan_operations() -> None:
    plan = build_plan(ProfileOptions())
    ops = plan.ops
    assert ops[0x00100010] is Operation.PSEUDONYM_NAME
    assert ops[0x00100020] is Operation.PSEUDONYM_ID
    assert ops[0x00080020] is Operation.SHIFT_TIME
    assert ops[0x00080012] is Operation.SHIFT_TIME  # unlisted date: strict extra
    assert ops[0x00080018] is Operation.REMAP_UID
    assert ops[0x00081155] is Operation.REMAP_UID
    assert 0x00080016 not in ops  # SOP Class UID kept
    assert ops[0x00880200] is Operation.REMOVE  # icon image sequence
    assert ops[0x00081140] is Operation.RECURSE  # X/Z/U*: kept, UIDs inside remapped
    assert ops[0x0040A730] is Operation.SCRUB_SEQUENCE  # content sequence: D
    assert ops[0x00081190] is Operation.REMOVE  # RetrieveURL (UR): strict extra
    no_dates = build_plan(ProfileOptions(retain_long_modified_dates=False))
    assert no_dates.ops[0x00080020] is Operation.EMPTY  # Study Date is Z
    assert no_dates.ops[0x00080012] is Operation.REMOVE


def test_deid_safe_list_mode_keeps_only_listed_attributes() -> None:
    plan = build_plan(ProfileOptions(safe_list=frozenset({0x00180050})))
    assert 0x00180050 not in plan.ops  # kept
    assert plan.ops[0x00181030] is Operation.REMOVE  # ProtocolName not listed
    assert plan.ops[0x00100010] is Operation.PSEUDONYM_NAME  # needed, still pseudonymised


def test_deid_option_validation_messages() -> None:
    with pytest.raises(ConfigError, match="at most one"):
        ProfileOptions(retain_long_full_dates=True, retain_long_modified_dates=True)
    with pytest.raises(ConfigError, match="safe private creators"):
        ProfileOptions(retain_safe_private=True)
