"""DataModule, samplers and patient folds on a tiny store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hidim.errors import TrainingError
from hidim.store import Store
from hidim.training.config import config_from_dict
from hidim.training.cv import patient_folds, patient_folds_for_config
from hidim.training.datamodule import HidimDataModule
from hidim.training.samplers import EventBatchSampler, StratifiedBatchSampler


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(st.booleans(), min_size=4, max_size=60),
    batch=st.integers(1, 9),
    min_events=st.integers(1, 3),
    epoch=st.integers(0, 3),
)
def test_event_sampler_covers_everything_once_with_events_in_every_batch(
    events: list[bool], batch: int, min_events: int, epoch: int
) -> None:
    if sum(events) < min_events:
        with pytest.raises(TrainingError, match="fewer than min_events"):
            EventBatchSampler(events, batch_size=batch, min_events=min_events)
        return
    sampler = EventBatchSampler(events, batch_size=batch, min_events=min_events, seed=1)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(events)))
    assert all(sum(events[i] for i in b) >= min_events for b in batches)
    assert len(batches) == len(sampler)


def test_stratified_sampler_spreads_a_rare_class() -> None:
    labels = np.array([1] * 4 + [0] * 28)
    batches = list(StratifiedBatchSampler(labels, batch_size=8, seed=0))
    assert [sum(labels[i] for i in b) for b in batches] == [1, 1, 1, 1]


def test_patient_folds_partition_patients() -> None:
    patients = [f"P{i}" for i in range(10)]
    strata = [i % 2 for i in range(10)]
    folds = patient_folds(patients, 5, seed=0, strata=strata)
    vals = [p for _, val in folds for p in val]
    assert sorted(vals) == sorted(patients)
    for train, val in folds:
        assert not set(train) & set(val) and len(val) == 2
        assert sorted(strata[patients.index(p)] for p in val) == [0, 1]
    with pytest.raises(TrainingError, match="2 <= folds <= 10"):
        patient_folds(patients, 11)


def test_config_folds_use_train_and_val_patients_only(tiny_store: Path, base_config) -> None:
    cfg = config_from_dict(base_config(data={"threshold": 40}))
    folds = patient_folds_for_config(cfg, 3)
    m = Store(tiny_store).manifest
    pool = set(m.loc[m["split"] != "test", "patient_key"])
    assert {p for _, v in folds for p in v} == pool


def test_datamodule_batches_carry_targets_groups_and_tabular(tiny_store: Path, base_config) -> None:
    cfg = config_from_dict(
        base_config(
            data={"threshold": 40, "group_columns": ["sex", "site"], "tabular": ["age", "sex"]}
        )
    )
    dm = HidimDataModule(cfg.data, seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["clip"].shape == (4, 1, 8, 32, 32)
    assert set(batch["target"].unique().tolist()) <= {0.0, 1.0}
    assert batch["group__sex"].dtype == torch.long
    assert dm.coder.vocab == {"sex": ["F", "M"], "site": ["east", "north", "south"]}
    codes = torch.cat([b["group__sex"] for b in dm.train_dataloader()])
    assert (codes == -1).any()  # missing sex is coded -1, not dropped
    n_features, groups = dm.tabular_layout()
    assert n_features == 3 and groups == [(1, 2)]
    assert dm.in_channels == 1
    arrays = dm.train_arrays()
    assert len(arrays["target"]) == len(dm.datasets["train"])


def test_datamodule_fold_replaces_the_store_split(tiny_store: Path, base_config) -> None:
    cfg = config_from_dict(base_config())
    train_p = ["P000", "P001", "P002"]
    val_p = ["P004", "P005"]
    dm = HidimDataModule(cfg.data, fold=(train_p, val_p))
    dm.setup()
    seen = {dm.datasets["train"][i]["patient_key"] for i in range(len(dm.datasets["train"]))}
    assert seen == set(train_p)
    assert len(dm.datasets["val"]) == 2
