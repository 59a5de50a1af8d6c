"""Uncertainty: the abstain rule ("I don't know"), selective prediction, OOD detection,
MC dropout and ensemble aggregation.

The abstain rule is a threshold on a per-prediction uncertainty score (higher = less sure:
evidential ``K / S``, ensemble spread, predictive entropy...). It is *calibrated on
validation data* for a target coverage -- the fraction of cases the model keeps -- and then
applied unchanged to test or deployment data, where in-distribution coverage matches the
target up to sampling error and out-of-distribution inputs are (ideally) refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions that need it (fast CLI start)
    from torch import Tensor, nn

from hidim.errors import EvaluationError
from hidim.evaluate._validation import as_1d_float, check_same_length

__all__ = [
    "fit_abstention_threshold",
    "abstain",
    "risk_coverage_curve",
    "aurc",
    "ood_auroc",
    "ood_abstention_summary",
    "enable_mc_dropout",
    "mc_dropout_predict",
    "ensemble_aggregate",
]


def fit_abstention_threshold(uncertainty_val: Any, target_coverage: float) -> float:
    """Threshold that answers at least ``target_coverage`` of *new* cases (split conformal).

    Cases with ``uncertainty <= threshold`` are answered, the others get "I don't know".
    The threshold is the ``ceil((n + 1) * target_coverage)``-th smallest of the ``n``
    validation scores -- the split-conformal quantile: for new cases exchangeable with the
    validation set, the expected answered fraction is at least ``target_coverage`` (the
    plain empirical quantile falls short by about ``1 / n``). On the validation set itself
    it answers ``ceil((n + 1) * target_coverage) / n`` (ties included). With too few
    validation cases for the target (``(n + 1) * target_coverage > n``) it returns
    ``inf``: answer everything, as no finite threshold is justified.

    Args:
        uncertainty_val: ``[n]`` uncertainty scores on *validation* data (higher = less sure).
        target_coverage: fraction to answer, in (0, 1] (e.g. 0.95 = abstain on ~5 %).

    Returns:
        The threshold.
    """
    u = as_1d_float(uncertainty_val, "uncertainty_val")
    if not 0.0 < target_coverage <= 1.0:
        raise EvaluationError(f"target_coverage must lie in (0, 1], received {target_coverage}")
    n = u.shape[0]
    k = math.ceil((n + 1) * target_coverage - 1e-9)
    if k > n:
        return math.inf
    return float(np.partition(u, k - 1)[k - 1])


def abstain(uncertainty: Any, threshold: float) -> np.ndarray:
    """``[n]`` bool: True where the model should answer "I don't know" (``u > threshold``)."""
    u = as_1d_float(uncertainty, "uncertainty", allow_nan=True)
    return ~(u <= threshold)  # NaN uncertainty -> abstain


def risk_coverage_curve(uncertainty: Any, loss: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk vs coverage, keeping the most certain cases first.

    Args:
        uncertainty: ``[n]`` scores, higher = less sure.
        loss: ``[n]`` per-case loss (e.g. 0/1 error, absolute error).

    Returns:
        ``(coverage [m], risk [m])``: at each distinct uncertainty level, the fraction kept
        and the mean loss of the kept cases (ties enter together).
    """
    u = as_1d_float(uncertainty, "uncertainty")
    err = as_1d_float(loss, "loss")
    n = check_same_length(uncertainty=u, loss=err)
    order = np.argsort(u, kind="stable")
    us, ls = u[order], err[order]
    last = np.r_[us[1:] != us[:-1], True]  # end of each tie group
    kept = np.arange(1, n + 1)[last]
    return kept / n, np.cumsum(ls)[last] / kept


def aurc(uncertainty: Any, loss: Any) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019); lower is better.

    Computed as the mean selective risk over the ``n`` coverage levels ``1/n .. 1`` (tied
    uncertainties share their group's risk), the usual discrete AURC.
    """
    cov, risk = risk_coverage_curve(uncertainty, loss)
    n = as_1d_float(uncertainty, "uncertainty").shape[0]
    sizes = np.diff(np.r_[0, np.round(cov * n).astype(int)])
    return float(np.sum(risk * sizes) / n)


def ood_auroc(uncertainty_id: Any, uncertainty_ood: Any) -> float:
    """AUROC of separating OOD (positive) from in-distribution inputs by uncertainty.

    Arrays may differ in length (use ``bootstrap_ci(..., paired=False)`` for a CI).
    """
    from sklearn.metrics import roc_auc_score

    a = as_1d_float(uncertainty_id, "uncertainty_id")
    b = as_1d_float(uncertainty_ood, "uncertainty_ood")
    if a.size == 0 or b.size == 0:
        raise EvaluationError("ood_auroc needs at least one in-distribution and one OOD score")
    y = np.r_[np.zeros(a.shape[0]), np.ones(b.shape[0])]
    return float(roc_auc_score(y, np.r_[a, b]))


def ood_abstention_summary(
    uncertainty_val: Any,
    uncertainty_id: Any,
    uncertainty_ood: Mapping[str, Any] | Any,
    *,
    target_coverage: float,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Does the abstain rule refuse out-of-distribution inputs? One JSON-ready summary.

    The threshold is fitted on validation uncertainties for ``target_coverage``
    (:func:`fit_abstention_threshold`) and applied unchanged to in-distribution test
    inputs and to OOD inputs. Pass ``threshold`` when the rule was already fitted (e.g.
    ``hidim predict``'s ``abstain_score``, whose threshold is 1 by construction); the
    validation scores then only report the validation abstention.

    Args:
        uncertainty_val: ``[n_val]`` validation uncertainties (in-distribution).
        uncertainty_id: ``[n_id]`` in-distribution test uncertainties.
        uncertainty_ood: ``{kind: [n_k]}`` OOD uncertainties per kind (or one array).
        target_coverage: fraction of validation cases to answer (e.g. 0.9).
        n_boot, alpha, seed: bootstrap of the OOD AUROC (unpaired resampling).
        threshold: a fitted threshold to apply instead of fitting one.

    Returns:
        ``{"threshold", "target_coverage", "val_abstention", "id_abstention", "n_id",
        "ood_abstention", "n_ood", "ood": {kind: {"abstention", "n"}}, "ood_auroc":
        {estimate, low, high, ...}}``.
    """
    from hidim.evaluate.bootstrap import bootstrap_ci

    kinds = (
        {
            str(k): as_1d_float(v, f"uncertainty_ood[{k!r}]", allow_nan=True)
            for k, v in uncertainty_ood.items()
        }
        if isinstance(uncertainty_ood, Mapping)
        else {"ood": as_1d_float(uncertainty_ood, "uncertainty_ood", allow_nan=True)}
    )
    u_val = as_1d_float(uncertainty_val, "uncertainty_val", allow_nan=True)
    thr = (
        float(threshold)
        if threshold is not None
        else fit_abstention_threshold(uncertainty_val, target_coverage)
    )
    u_id = as_1d_float(uncertainty_id, "uncertainty_id")
    all_ood = np.concatenate([v for v in kinds.values()]) if kinds else np.empty(0)
    if all_ood.size == 0 or u_id.size == 0:
        raise EvaluationError("need at least one in-distribution and one OOD uncertainty")
    # NaN uncertainty (a degenerate input) abstains, and ranks as the most uncertain
    top = float(np.nanmax(np.r_[u_id, all_ood])) if np.isfinite(all_ood).any() else 0.0
    ranked_ood = np.where(np.isnan(all_ood), top + 1.0, all_ood)
    return {
        "threshold": thr,
        "target_coverage": target_coverage,
        "val_abstention": float(abstain(u_val, thr).mean()) if u_val.size else float("nan"),
        "id_abstention": float(abstain(u_id, thr).mean()),
        "n_id": int(u_id.size),
        "ood_abstention": float(abstain(all_ood, thr).mean()),
        "n_ood": int(all_ood.size),
        "ood": {
            k: {"abstention": float(abstain(v, thr).mean()), "n": int(v.size)}
            for k, v in kinds.items()
        },
        "ood_auroc": bootstrap_ci(
            ood_auroc, u_id, ranked_ood, n_boot=n_boot, alpha=alpha, seed=seed, paired=False
        ).as_dict(),
    }


def enable_mc_dropout(model: nn.Module) -> list[nn.Module]:
    """Put ``model`` in eval mode except its dropout layers; return those layers.

    Batch norm and everything else stay in inference mode, so only dropout is stochastic.
    """
    from torch import nn

    model.eval()
    layers: list[nn.Module] = [
        m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)
    ]
    for m in layers:
        m.train()
    return layers


def mc_dropout_predict(
    model: nn.Module,
    inputs: Any,
    n_samples: int,
    *,
    predict_fn: Callable[[Any], Mapping[str, Tensor]] | None = None,
    seed: int | None = 0,
) -> dict[str, Tensor]:
    """Monte-Carlo dropout: ``n_samples`` stochastic passes, aggregated by :func:`ensemble_aggregate`.

    Args:
        model: the network; only its dropout layers are switched to training mode, and
            every module's mode is restored afterwards.
        inputs: what ``model`` takes (a tensor, or a dict passed as ``model(inputs)``).
        n_samples: number of passes (e.g. 20-50).
        predict_fn: maps the raw model output to a prediction dict (e.g. ``head.predict``);
            default: the output itself if it is a dict, else ``{"score": output}``.
        seed: seeds dropout masks inside a forked RNG (the global RNG is left untouched);
            None = not reproducible.

    Returns:
        The aggregated prediction dict (means, ``*_std`` spreads, ``uncertainty``).

    Raises:
        EvaluationError: the model has no dropout layer (MC dropout would return copies).
    """
    import torch

    if not isinstance(n_samples, int) or n_samples < 2:
        raise EvaluationError(f"n_samples must be an int >= 2, received {n_samples!r}")
    modes = {m: m.training for m in model.modules()}
    try:
        if not enable_mc_dropout(model):
            raise EvaluationError(
                "mc_dropout_predict: the model has no dropout layer; add dropout (e.g. the "
                "head's dropout=0.2) or use an ensemble"
            )
        outs = []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            for _ in range(n_samples):
                raw = model(inputs)
                if predict_fn is not None:
                    outs.append(dict(predict_fn(raw)))
                elif isinstance(raw, Mapping):
                    outs.append(dict(raw))
                else:
                    outs.append({"score": raw})
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return ensemble_aggregate(outs)


def _entropy(p: Tensor) -> Tensor:
    """Entropy (nats) of ``[B, K]`` probabilities or ``[B]`` Bernoulli probabilities."""
    import torch

    if p.ndim == 1:
        p = torch.stack([1 - p, p], dim=1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)


def ensemble_aggregate(predictions: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
    """Combine the prediction dicts of ensemble members or MC-dropout passes.

    For every key present in all members: ``key`` = mean over members and ``key_std`` =
    standard deviation across members (population, ``ddof=0``). Then:

    * with ``prob``: ``entropy`` of the mean probability (total uncertainty) and
      ``mutual_information`` = entropy of the mean - mean entropy (epistemic part, BALD);
      ``uncertainty`` = ``entropy``;
    * otherwise: ``uncertainty`` = ``score_std`` (e.g. spread of survival risk scores);
    * a member-level ``uncertainty`` (e.g. evidential) is kept as ``uncertainty_members``.

    Args:
        predictions: list of dicts of ``[B, ...]`` tensors/arrays, one per member (>= 2).
    """
    import torch

    if len(predictions) < 2:
        raise EvaluationError(
            f"need predictions of at least 2 members, received {len(predictions)}"
        )
    keys = set(predictions[0])
    for p in predictions[1:]:
        keys &= set(p)
    if not keys:
        raise EvaluationError("the members' prediction dicts share no key")
    out: dict[str, Tensor] = {}
    for k in sorted(keys):
        stack = torch.stack([torch.as_tensor(p[k]) for p in predictions]).to(torch.float64)
        name = "uncertainty_members" if k == "uncertainty" else k
        out[name] = stack.mean(0)
        out[f"{name}_std"] = stack.std(0, unbiased=False)
    if "prob" in keys:
        probs = torch.stack([torch.as_tensor(p["prob"]) for p in predictions]).to(torch.float64)
        total = _entropy(probs.mean(0))
        member = torch.stack([_entropy(q) for q in probs]).mean(0)
        out["entropy"] = total
        out["mutual_information"] = total - member
        out["uncertainty"] = total
    elif "score" in keys:
        out["uncertainty"] = out["score_std"]
    return out
