"""Patient-level splits: deterministic, proportional, stratified, stable, leak-checked."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.curate.splits import assign_splits, check_no_leakage, resplit_store, split_manifest
from hidim.errors import CurationError


def test_assignment_is_deterministic_and_order_free() -> None:
    keys = [f"p{i}" for i in range(100)]
    a = assign_splits(keys, seed=1)
    assert a == assign_splits(list(reversed(keys)) + keys[:5], seed=1)
    assert a != assign_splits(keys, seed=2)
    counts = pd.Series(a).value_counts().to_dict()
    assert counts == {"train": 70, "val": 15, "test": 15}


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 1000))
def test_counts_follow_fractions(n: int, seed: int) -> None:
    a = assign_splits([f"k{i}" for i in range(n)], seed=seed, fractions=(0.6, 0.2, 0.2))
    counts = pd.Series(a).value_counts()
    assert len(a) == n
    for split, frac in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert abs(counts.get(split, 0) - frac * n) < 1.0 + 1e-9


def test_stratified_split_balances_outcome() -> None:
    keys = [f"p{i}" for i in range(40)]
    strata = {k: int(i < 10) for i, k in enumerate(keys)}  # 25 % positives
    a = assign_splits(keys, seed=0, fractions=(0.6, 0.2, 0.2), strata=strata)
    df = pd.DataFrame({"split": pd.Series(a), "y": pd.Series(strata)})
    assert df.groupby("split")["y"].sum().to_dict() == {"test": 2, "train": 6, "val": 2}


def test_existing_assignments_are_kept() -> None:
    old = assign_splits([f"p{i}" for i in range(20)], seed=0)
    new = assign_splits([f"p{i}" for i in range(30)], seed=0, existing=old)
    assert all(new[k] == v for k, v in old.items())


def test_patient_never_in_two_splits_and_leak_raises() -> None:
    m = pd.DataFrame(
        {
            "series_key": list("abcdef"),
            "patient_key": ["p1", "p1", "p2", "p3", "p3", "p4"],
            "study_uid": ["s1", "s2", "s3", "s4", "s4", "s5"],
        }
    )
    out = split_manifest(m, seed=0)
    assert out.groupby("patient_key")["split"].nunique().max() == 1
    leaky = out.copy()
    leaky.loc[0, "split"], leaky.loc[1, "split"] = "train", "test"
    with pytest.raises(
        CurationError, match="expected every patient_key in exactly one split, got 1"
    ):
        check_no_leakage(leaky)
    with pytest.raises(CurationError, match="three split fractions"):
        assign_splits(["a"], fractions=(0.5, 0.5, 0.5))


def test_resplit_store_stratifies_by_a_label(tmp_path) -> None:
    from hidim.store.writer import init_store, write_labels, write_manifest

    root = init_store(tmp_path / "s")
    n = 20
    write_manifest(
        root,
        [
            {
                "series_key": f"k{i}",
                "patient_key": f"p{i}",
                "study_uid": f"s{i}",
                "array_path": f"arrays/k{i}.zarr",
            }
            for i in range(n)
        ],
    )
    write_labels(
        root,
        pd.DataFrame(
            {
                "patient_key": [f"p{i}" for i in range(n)],
                "study_uid": None,
                "y": [int(i < 10) for i in range(n)],
            }
        ),
    )
    counts = resplit_store(root, stratify="y", fractions=(0.5, 0.25, 0.25), seed=0)
    assert counts.set_index("split")["patients"].to_dict() == {"test": 5, "train": 10, "val": 5}
    with pytest.raises(CurationError, match="expected stratify column 'outcome'"):
        resplit_store(root, stratify="outcome")
