"""Input-stream importance for fusion models: Shapley values of the image embedding vs each
tabular variable (Captum ``ShapleyValueSampling`` / exact ``ShapleyValues`` with feature
groups).

The game's players are the *streams*: the whole image embedding ``[D]`` is one player and
every tabular variable another (its value and its missing-indicator move together). A
player "absent" from a coalition takes its baseline value: the dataset-mean embedding for
the image; for a tabular variable the mean of the continuous columns and the most frequent
code of categorical ones (or rows of a background sample, averaged, with
``n_background``). Working on the embedding rather than the pixels makes this cheap: the
backbone runs once per case, the fusion head once per coalition.

The result answers "how much of the prediction comes from the echo and how much from age,
sex, ethnicity...?" (Shad et al. 2021), which also exposes a model leaning on a demographic
variable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hidim.errors import ExplainError

__all__ = ["IMAGE_STREAM", "stream_importance", "stream_baselines"]

IMAGE_STREAM = "image"
StreamFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def stream_baselines(
    embedding: Tensor, tabular: Tensor, missing: Tensor, *, n_continuous: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference values ``[1, D]``, ``[1, F]``, ``[1, F]`` for absent players.

    Continuous columns (the first ``n_continuous``; all when ``None``): mean of the observed
    values. Categorical columns: the most frequent observed code. Missing flags: False
    (unless the column is never observed, then it stays missing).
    """
    n_cont = tabular.shape[1] if n_continuous is None else n_continuous
    tab_base = torch.zeros(1, tabular.shape[1], dtype=tabular.dtype)
    miss_base = torch.zeros(1, tabular.shape[1], dtype=missing.dtype)
    for j in range(tabular.shape[1]):
        observed = tabular[~missing[:, j].bool(), j]
        if observed.numel() == 0:
            miss_base[0, j] = 1
            continue
        if j < n_cont:
            tab_base[0, j] = observed.float().mean()
        else:
            values, counts = torch.unique(observed, return_counts=True)
            tab_base[0, j] = values[counts.argmax()]
    return embedding.float().mean(0, keepdim=True), tab_base, miss_base


def stream_importance(
    fn: StreamFn,
    embedding: Tensor,
    tabular: Tensor,
    missing: Tensor | None = None,
    *,
    names: Sequence[str],
    n_continuous: int | None = None,
    exact_max_players: int = 6,
    n_samples: int = 32,
    n_background: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Shapley value of each input stream, per case and summarised.

    Args:
        fn: ``fn(embedding [N, D], tabular [N, F], missing [N, F] bool) -> [N]`` score
            (e.g. a fusion head followed by ``head.predict(...)["score"]``).
        embedding: Image embeddings ``[N, D]`` of the cases explained.
        tabular: Tabular inputs ``[N, F]``.
        missing: Bool ``[N, F]`` missing flags (default: none missing).
        names: The variable of each tabular column (``age``, ``sex``...); columns sharing a
            name (the one-hot columns of a categorical variable) form one player.
        n_continuous: Leading continuous columns (the rest are categorical codes); default
            all continuous.
        exact_max_players: Use exact Shapley values (all permutations) up to this many
            players; sample permutations above it.
        n_samples: Permutations sampled per case when not exact.
        n_background: ``0``: one baseline (means/modes). ``k > 0``: average the attributions
            over ``k`` background cases drawn from the inputs (interventional Shapley).
        seed: Seed of the permutation and background sampling.

    Returns:
        One row per stream: ``input`` (``image`` or the variable name), ``mean_abs``
        (mean |φ| — the report's importance), ``mean`` (signed mean φ), ``share`` (of the
        total mean |φ|). ``df.attrs["per_case"]`` holds the ``[N, 1 + F]`` values.

    Raises:
        ExplainError: Shape mismatches, or names not matching the columns.
    """
    from captum.attr import ShapleyValues, ShapleyValueSampling

    emb = torch.as_tensor(embedding).float()
    tab = torch.as_tensor(tabular).float()
    if emb.ndim != 2 or tab.ndim != 2 or emb.shape[0] != tab.shape[0]:
        raise ExplainError(
            f"expected embedding [N, D] and tabular [N, F] with the same N, got "
            f"{tuple(emb.shape)} and {tuple(tab.shape)}"
        )
    miss = (
        torch.zeros_like(tab, dtype=torch.bool)
        if missing is None
        else torch.as_tensor(missing).bool()
    )
    if miss.shape != tab.shape:
        raise ExplainError(
            f"missing must be shaped like tabular {tuple(tab.shape)}, got {tuple(miss.shape)}"
        )
    if len(names) != tab.shape[1]:
        raise ExplainError(
            f"expected {tab.shape[1]} names (one per tabular column), got {len(names)}"
        )
    n = tab.shape[0]
    variables = list(dict.fromkeys(names))
    f = len(variables)
    player = torch.tensor([1 + variables.index(v) for v in names]).unsqueeze(0)

    def forward(e: Tensor, t: Tensor, m: Tensor) -> Tensor:
        out = fn(e, t, m > 0.5)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise ExplainError(f"fn must return scores [N], got shape {tuple(out.shape)}")
        return out

    groups = (torch.zeros(1, emb.shape[1], dtype=torch.long), player, player)
    players = f + 1
    method = (
        ShapleyValues(forward) if players <= exact_max_players else ShapleyValueSampling(forward)
    )
    kwargs = {} if players <= exact_max_players else {"n_samples": n_samples}
    if n_background > 0:
        rng = np.random.default_rng(seed)
        rows = rng.choice(n, size=min(n_background, n), replace=False)
        bases = [(emb[[r]], tab[[r]], miss[[r]].float()) for r in rows]
    else:
        e0, t0, m0 = stream_baselines(emb, tab, miss, n_continuous=n_continuous)
        bases = [(e0, t0, m0.float())]
    total = torch.zeros(n, players)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for base in bases:
            attr = method.attribute(
                (emb, tab, miss.float()), baselines=base, feature_mask=groups, **kwargs
            )
            total[:, 0] += attr[0][:, 0]
            for j in range(f):  # every column of a player carries the player's value
                col = int((player[0] == j + 1).nonzero()[0])
                total[:, 1 + j] += attr[1][:, col]
    values = (total / len(bases)).numpy()
    mean_abs = np.abs(values).mean(0)
    denom = mean_abs.sum()
    out = pd.DataFrame(
        {
            "input": [IMAGE_STREAM, *variables],
            "mean_abs": mean_abs,
            "mean": values.mean(0),
            "share": mean_abs / denom if denom > 0 else np.zeros(players),
        }
    )
    out.attrs["per_case"] = values
    return out
