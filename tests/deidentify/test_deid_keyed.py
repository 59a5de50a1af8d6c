"""Keyed UIDs, pseudonyms and date shifts: deterministic, keyed, valid, interval-preserving."""

from __future__ import annotations

import re
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.deidentify.dates import (
    shift_date,
    shift_date_time_pair,
    shift_datetime,
    shift_time,
)
from hidim.deidentify.keys import create_key, load_key
from hidim.deidentify.pseudonyms import date_shift, patient_pseudonym
from hidim.deidentify.uids import remap_uid
from hidim.errors import DeidentificationError

KEY_A = b"a" * 32
KEY_B = b"b" * 32
uids = st.from_regex(r"1\.[2-9](\.[1-9][0-9]{0,8}){2,10}", fullmatch=True)


@given(uids)
def test_deid_uid_remap_is_keyed_valid_and_deterministic(uid: str) -> None:
    new = remap_uid(uid, KEY_A)
    assert new == remap_uid(uid, KEY_A)
    assert new != remap_uid(uid, KEY_B)
    assert len(new) <= 64 and re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", new)
    assert uid not in new


def test_deid_standard_uids_are_kept() -> None:
    assert remap_uid("1.2.840.10008.5.1.4.1.1.2", KEY_A) == "1.2.840.10008.5.1.4.1.1.2"
    assert remap_uid("", KEY_A) == ""


def test_deid_pseudonyms_are_keyed() -> None:
    assert patient_pseudonym("MRN1", KEY_A) == patient_pseudonym("MRN1", KEY_A)
    assert patient_pseudonym("MRN1", KEY_A) != patient_pseudonym("MRN1", KEY_B)
    assert patient_pseudonym("MRN1", KEY_A) != patient_pseudonym("MRN2", KEY_A)
    assert len(patient_pseudonym("x", KEY_A)) <= 16


moments = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2040, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)


@settings(max_examples=200)
@given(moments, moments, st.text(min_size=1, max_size=12))
def test_deid_date_time_shift_preserves_intervals(a: datetime, b: datetime, pid: str) -> None:
    delta = date_shift(pid, KEY_A)
    assert timedelta(days=-3 * 365 - 1) <= delta <= timedelta(days=-364)

    def shifted(m: datetime) -> datetime:
        d, t = shift_date_time_pair(m.strftime("%Y%m%d"), m.strftime("%H%M%S"), delta)
        assert d is not None and t is not None
        return datetime.strptime(d + t, "%Y%m%d%H%M%S")

    assert shifted(b) - shifted(a) == b - a
    assert shifted(a) - a == delta
    dt = shift_datetime(a.strftime("%Y%m%d%H%M%S"), delta)
    assert dt == shifted(a).strftime("%Y%m%d%H%M%S")


def test_deid_shift_keeps_precision_and_crosses_midnight() -> None:
    delta = timedelta(days=-10, hours=3)  # = -9 days -21 hours
    assert shift_date_time_pair("20200315", "2330", delta) == ("20200306", "0230")
    assert shift_time("23", delta) == "02"
    assert shift_time("233000.123", delta) == "023000.123"
    assert shift_date("20200315", delta) == "20200306"
    assert shift_datetime("202003", delta) == "202002"
    assert shift_datetime("20200315233000+0100", delta) == "20200306023000+0100"
    assert shift_date("JOHNDOE", delta) is None


def test_deid_key_file_is_private_and_validated(tmp_path: Path) -> None:
    path = create_key(tmp_path / "k")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_key(path)) == 32
    with pytest.raises(DeidentificationError, match="existing"):
        create_key(path)
    with pytest.raises(DeidentificationError, match="--create-key"):
        load_key(tmp_path / "missing")
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(DeidentificationError, match="at least 16 bytes"):
        load_key(tmp_path / "short")
