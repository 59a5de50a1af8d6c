"""DeepHit for a single risk (Lee et al., AAAI 2018): discrete-time PMF, likelihood + ranking.

The network gives logits ``[B, K + 1]`` over the ``K`` grid intervals plus one "beyond the
grid" bin; ``pmf = softmax(logits)``, ``S(e_{k+1}) = 1 - sum_{j<=k} pmf_j``. Targets use the
``(idx, event)`` encoding of :mod:`hidim.tasks.discrete`.

Loss = ``alpha * NLL + (1 - alpha) * ranking``, as pycox's ``DeepHitSingle`` (default
``alpha=0.2``, ``sigma=0.1``):

* NLL: event in interval ``k``: ``-log pmf_k``; censored after ``k`` survived intervals:
  ``-log sum_{j>=k} pmf_j``.
* ranking: for every comparable pair (``i`` had the event, ``T_i < T_j`` or tied with ``j``
  censored) the penalty ``exp(-(F_i(T_i) - F_j(T_i)) / sigma)`` where ``F = 1 - S`` is the
  cumulative incidence at the end of ``i``'s event interval; averaged over all ``B x B``
  pairs as pycox does.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hidim.errors import TaskError
from hidim.tasks.discrete import _reduce, _targets

__all__ = ["deephit_nll", "deephit_ranking_loss", "deephit_loss", "pmf_to_survival"]


def deephit_nll(
    logits: Tensor,
    idx: Tensor,
    event: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """DeepHit likelihood term. ``logits`` ``[B, K + 1]``; ``idx``/``event`` ``[B]``."""
    n_bins = logits.shape[1] - 1
    _targets(idx, event, n_bins)
    idx = idx.to(logits.device)
    ev = event.to(logits.device).bool()
    log_norm = torch.logsumexp(logits, dim=1)
    # log sum_{j >= k} exp(logits_j): reverse logcumsumexp
    tail = torch.flip(torch.logcumsumexp(torch.flip(logits, (1,)), 1), (1,))
    log_event = logits.gather(1, idx[:, None])[:, 0]
    log_survive = tail.gather(1, idx[:, None])[:, 0]
    per = log_norm - torch.where(ev, log_event, log_survive)
    return _reduce(per, weight, reduction)


def pmf_to_survival(logits: Tensor) -> Tensor:
    """``S(e_{k+1})`` ``[B, K]`` from DeepHit logits ``[B, K + 1]``.

    ``S(e_{k+1}) = sum_{j > k} pmf_j``, computed from the tail ``logsumexp`` (no ``1 - x``
    cancellation).
    """
    tail = torch.flip(torch.logcumsumexp(torch.flip(logits, (1,)), 1), (1,))
    return torch.exp(tail[:, 1:] - torch.logsumexp(logits, dim=1, keepdim=True))


def deephit_ranking_loss(
    logits: Tensor, idx: Tensor, event: Tensor, time: Tensor, *, sigma: float = 0.1
) -> Tensor:
    """DeepHit's pairwise ranking term (see module doc). ``time`` ``[B]`` orders the pairs."""
    if sigma <= 0:
        raise TaskError(f"sigma must be > 0, received {sigma}")
    ev = event.to(logits.device).bool()
    t = time.to(logits.device)
    idx = idx.to(logits.device)
    cif = 1.0 - pmf_to_survival(logits)  # [B, K]
    n_bins = cif.shape[1]
    col = idx.clamp(max=n_bins - 1)
    cif_at_ti = cif[:, col]  # [B_j, B_i]: F_j(T_i)
    own = cif_at_ti.diagonal()  # F_i(T_i)
    diff = own[None, :] - cif_at_ti  # [j, i] = F_i(T_i) - F_j(T_i)
    ti, tj = t[None, :], t[:, None]
    comparable = ev[None, :] & ((ti < tj) | ((ti == tj) & ~ev[:, None]))
    comparable = comparable & (idx[None, :] < n_bins)
    penalty = torch.exp(-diff / sigma) * comparable.to(logits.dtype)
    return penalty.mean()


def deephit_loss(
    logits: Tensor,
    idx: Tensor,
    event: Tensor,
    time: Tensor,
    *,
    alpha: float = 0.2,
    sigma: float = 0.1,
    weight: Tensor | None = None,
) -> Tensor:
    """``alpha * NLL + (1 - alpha) * ranking`` (pycox's ``DeepHitSingleLoss`` weighting)."""
    if not 0.0 <= alpha <= 1.0:
        raise TaskError(f"alpha must lie in [0, 1], received {alpha}")
    nll = deephit_nll(logits, idx, event, weight=weight)
    if alpha == 1.0:
        return nll
    return alpha * nll + (1.0 - alpha) * deephit_ranking_loss(logits, idx, event, time, sigma=sigma)
