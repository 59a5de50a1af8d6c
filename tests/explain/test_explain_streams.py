"""Input-stream Shapley values: efficiency, null players, grouped one-hot variables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hidim.errors import ExplainError
from hidim.explain.streams import stream_baselines, stream_importance

N, D = 24, 5


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(N, D, generator=g)
    tab = torch.randn(N, 2, generator=g)
    sex = torch.randint(0, 2, (N,), generator=g).float()
    tab = torch.cat([tab, sex[:, None], 1 - sex[:, None]], 1)  # age, bmi, sex one-hot (2)
    miss = torch.zeros(N, 4, dtype=torch.bool)
    return emb, tab, miss


def _fn(e, t, m):
    return 2.0 * e[:, 0] + 1.5 * t[:, 0] + 0.0 * t[:, 1] + 0.7 * t[:, 2]


NAMES = ["age", "bmi", "sex", "sex"]


def test_efficiency_null_player_and_grouping() -> None:
    emb, tab, miss = _data()
    df = stream_importance(_fn, emb, tab, miss, names=NAMES, n_continuous=2)
    assert list(df["input"]) == ["image", "age", "bmi", "sex"]
    per_case = df.attrs["per_case"]
    e0, t0, m0 = stream_baselines(emb, tab, miss, n_continuous=2)
    full = _fn(emb, tab, miss) - _fn(e0, t0, m0)
    np.testing.assert_allclose(per_case.sum(1), full.numpy(), atol=1e-5)  # efficiency
    imp = df.set_index("input")["mean_abs"]
    assert imp["bmi"] == pytest.approx(0.0, abs=1e-7)  # null player
    # Additive model: each player's value is its own term's deviation from the baseline.
    np.testing.assert_allclose(per_case[:, 1], 1.5 * (tab[:, 0] - t0[0, 0]).numpy(), atol=1e-5)
    assert df["share"].sum() == pytest.approx(1.0)


def test_sampling_agrees_with_exact_and_background_averaging_runs() -> None:
    emb, tab, miss = _data(1)

    def interacting(e, t, m):
        return e[:, 0] * t[:, 0] + t[:, 2]

    exact = stream_importance(interacting, emb, tab, miss, names=NAMES)
    sampled = stream_importance(
        interacting, emb, tab, miss, names=NAMES, exact_max_players=1, n_samples=200
    )
    np.testing.assert_allclose(sampled["mean_abs"], exact["mean_abs"], rtol=0.15, atol=0.02)
    bg = stream_importance(interacting, emb, tab, miss, names=NAMES, n_background=4)
    assert np.isfinite(bg["mean_abs"]).all()


def test_missing_flags_move_with_their_variable() -> None:
    emb, tab, miss = _data(2)
    miss[:6, 0] = True

    def fn(e, t, m):
        return 3.0 * m[:, 0].float()

    df = stream_importance(fn, emb, tab, miss, names=NAMES).set_index("input")
    assert df.loc["age", "mean_abs"] == pytest.approx(3.0 * 6 / N)
    assert df.loc["image", "mean_abs"] == 0


def test_stream_errors() -> None:
    emb, tab, miss = _data()
    with pytest.raises(ExplainError, match="one per tabular column"):
        stream_importance(_fn, emb, tab, miss, names=["age"])
    with pytest.raises(ExplainError, match="same N"):
        stream_importance(_fn, emb[:3], tab, miss, names=NAMES)
    with pytest.raises(ExplainError, match="shaped like tabular"):
        stream_importance(_fn, emb, tab, miss[:, :2], names=NAMES)
