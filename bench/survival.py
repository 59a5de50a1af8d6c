"""Survival maths benchmark: hidim vs lifelines, scikit-survival, torchsurv and pycox.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/survival.py`` (about 2-4 minutes on 2 cores).

1. Harrell's C-index at n = 1e3, 1e4, 1e5 (tied times and tied risks present), every
   library on the same data, agreement with scikit-survival's definition printed beside
   the time. A baseline whose *predicted* time at the next size (from its measured time and
   complexity) exceeds 60 s is skipped and the output says so.
2. Cox negative partial log-likelihood, forward + backward, Breslow and Efron, float32 and
   float64, at n = 1e3, 1e4, 1e5 (best of 7 interleaved repeats), vs torchsurv (``neg_partial_log_likelihood``) and pycox
   (``cox_ph_loss``, which ignores ties). Agreement = |loss - exact float64 loss| / |exact|.

Figures are wall-clock (best of up to 5 repeats), so they move with machine load; the
ratios in the same run are what to compare.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hidim.evaluate import concordance_index  # noqa: E402
from hidim.tasks.survival import cox_nll  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
LIMIT_S = 60.0
SIZES = (1_000, 10_000, 100_000)
LOSS_REPEATS = 7


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t = np.round(rng.exponential(size=n) * np.exp(-0.7 * risk) * 365) + 1.0  # days: ties
    c = rng.uniform(30, 1500, n)
    event = t <= c
    return np.minimum(t, c).round(), event, np.round(risk, 3)  # rounded risk: ties


def _timeit(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


class Runner:
    """Times one baseline across sizes, skipping a size whose predicted time > LIMIT_S."""

    def __init__(self, name: str, exponent: float) -> None:
        self.name, self.exponent = name, exponent
        self.last: tuple[int, float] | None = None

    def predicted(self, n: int) -> float:
        if self.last is None:
            return 0.0
        n0, t0 = self.last
        return t0 * (n / n0) ** self.exponent

    def run(self, n: int, fn: Callable[[], Any]) -> tuple[float | None, Any, str]:
        guess = self.predicted(n)
        if guess > LIMIT_S:
            return None, None, f"skipped (predicted {guess:.0f} s > {LIMIT_S:.0f} s)"
        repeats = 5 if guess < 1 else (3 if guess < 5 else 1)
        try:
            secs, out = _timeit(fn, repeats)
        except Exception as exc:  # a baseline failing is reported, not fatal
            return None, None, f"failed: {type(exc).__name__}: {str(exc)[:60]}"
        self.last = (n, secs)
        return secs, out, ""


def bench_cindex() -> None:
    from lifelines.utils import concordance_index as ll_cindex
    from pycox.evaluation.concordance import concordance_td
    from sksurv.metrics import concordance_index_censored
    from torchsurv.metrics.cindex import ConcordanceIndex

    print("\n== Harrell's C-index (higher risk = earlier event) ==")
    print(f"{'n':>8} {'library':<16} {'seconds':>10} {'x hidim':>9}  agreement with sksurv rules")
    runners = {
        "lifelines": Runner("lifelines", 1.1),
        "scikit-survival": Runner("scikit-survival", 2.0),
        "torchsurv": Runner("torchsurv", 2.0),
        "pycox": Runner("pycox", 2.0),
    }
    for n in SIZES:
        t, e, r = _data(n)
        t_hidim, c_hidim = _timeit(lambda t=t, e=e, r=r: concordance_index(t, e, r), 5)
        print(f"{n:>8} {'hidim':<16} {t_hidim:>10.4f} {1.0:>9.1f}  C = {c_hidim:.12f}")
        calls: dict[str, Callable[[], float]] = {
            "lifelines": lambda t=t, e=e, r=r: ll_cindex(t, -r, e),
            "scikit-survival": lambda t=t, e=e, r=r: concordance_index_censored(e, t, r)[0],
            "torchsurv": lambda t=t, e=e, r=r: float(
                ConcordanceIndex()(torch.as_tensor(r), torch.as_tensor(e), torch.as_tensor(t))
            ),
            "pycox": lambda t=t, e=e, r=r: concordance_td(
                t, e.astype(float), np.exp(-np.exp(r))[None, :].copy(), np.zeros(len(t), np.int64)
            ),
        }
        for name, fn in calls.items():
            secs, val, note = runners[name].run(n, fn)
            if secs is None:
                print(f"{n:>8} {name:<16} {'-':>10} {'-':>9}  {note}")
                continue
            diff = abs(float(val) - c_hidim)
            print(f"{n:>8} {name:<16} {secs:>10.4f} {secs / t_hidim:>9.1f}  |dC| = {diff:.1e}")


def _torchsurv_loss(eta: torch.Tensor, t: torch.Tensor, e: torch.Tensor, ties: str) -> torch.Tensor:
    from torchsurv.loss.cox import neg_partial_log_likelihood

    return neg_partial_log_likelihood(eta, e, t, ties_method=ties, reduction="sum")


def _pycox_loss(eta: torch.Tensor, t: torch.Tensor, e: torch.Tensor, ties: str) -> torch.Tensor:
    from pycox.models.loss import cox_ph_loss

    return cox_ph_loss(eta, t, e) * e.sum()  # pycox averages over events; no tie handling


def _hidim_loss(eta: torch.Tensor, t: torch.Tensor, e: torch.Tensor, ties: str) -> torch.Tensor:
    return cox_nll(eta, t, e, ties=ties, reduction="sum")


def _step(
    fn: Callable[..., torch.Tensor],
    risk: np.ndarray,
    dtype: torch.dtype,
    t: torch.Tensor,
    e: torch.Tensor,
    ties: str,
) -> torch.Tensor:
    eta = torch.as_tensor(risk, dtype=dtype).requires_grad_(True)
    loss = fn(eta, t, e, ties)
    loss.backward()
    return loss.detach()


def bench_cox_loss() -> None:
    print("\n== Cox negative partial log-likelihood, forward + backward (reduction = sum) ==")
    print(
        f"{'n':>8} {'ties':<8} {'dtype':<8} {'library':<10} {'seconds':>9} {'x hidim':>8} "
        f"{'out dtype':<10} rel. error vs exact float64"
    )
    libs: dict[str, Callable[..., torch.Tensor]] = {
        "hidim": _hidim_loss,
        "torchsurv": _torchsurv_loss,
        "pycox": _pycox_loss,
    }
    for n in SIZES:
        t_np, e_np, r_np = _data(n, seed=1)
        for ties in ("breslow", "efron"):
            exact = float(
                cox_nll(
                    torch.as_tensor(r_np),
                    torch.as_tensor(t_np),
                    torch.as_tensor(e_np),
                    ties=ties,
                    reduction="sum",
                )
            )
            for dt_name, dt in (("float32", torch.float32), ("float64", torch.float64)):
                t = torch.as_tensor(t_np, dtype=dt)
                e = torch.as_tensor(e_np)
                steps = {
                    lib: functools.partial(_step, fn, r_np, dt, t, e, ties)
                    for lib, fn in libs.items()
                    if not (lib == "pycox" and ties == "efron")
                }
                # interleaved repeats: a burst of machine load hits every library alike
                best = dict.fromkeys(steps, math.inf)
                values: dict[str, torch.Tensor] = {}
                for _ in range(LOSS_REPEATS):
                    for lib, step in steps.items():
                        t0 = time.perf_counter()
                        values[lib] = step()
                        best[lib] = min(best[lib], time.perf_counter() - t0)
                for lib in steps:
                    label = "pycox*" if lib == "pycox" else lib
                    err = abs(float(values[lib]) - exact) / abs(exact)
                    print(
                        f"{n:>8} {ties:<8} {dt_name:<8} {label:<10} {best[lib]:>9.4f} "
                        f"{best[lib] / best['hidim']:>8.2f} "
                        f"{str(values[lib].dtype).replace('torch.', ''):<10} {err:.1e}"
                    )
    print("pycox* = cox_ph_loss: risk sets by cumulative sum in sorted order, ties not handled.")


def main() -> None:
    print(
        f"torch {torch.__version__}, threads = {torch.get_num_threads()}, limit {LIMIT_S:.0f} s per call"
    )
    bench_cindex()
    bench_cox_loss()


if __name__ == "__main__":
    main()
