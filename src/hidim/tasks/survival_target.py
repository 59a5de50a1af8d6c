"""The one validated survival target type: right-censored ``(time, event)`` pairs.

Every survival loss, head and metric in hidim validates its inputs through this module, so
the same mistakes get the same helpful message everywhere (after scikit-survival's
``check_y_survival``): times must be finite and strictly positive, the event indicator
boolean, both one-dimensional and of equal length, and at least one event must be present
("All samples are censored").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hidim.errors import SurvivalDataError

if TYPE_CHECKING:  # torch is imported where it is used: the metrics never need it
    import torch
    from torch import Tensor

__all__ = ["SurvivalTarget", "check_survival_arrays", "check_survival_tensors"]

_STRUCTURED_DTYPE = np.dtype([("event", bool), ("time", np.float64)])


def _is_tensor(x: Any) -> bool:
    """A torch tensor, checked without importing torch (it is loaded if ``x`` is one)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_survival_arrays(
    time: Any,
    event: Any,
    *,
    allow_all_censored: bool = False,
    name: str = "survival target",
) -> tuple[np.ndarray, np.ndarray]:
    """Validate right-censored survival data given as array-likes.

    Args:
        time: ``[n]`` follow-up times (any unit, e.g. days), finite and > 0.
        event: ``[n]`` event indicator: bool, or integers/floats that are exactly 0 or 1.
        allow_all_censored: accept data without any event (e.g. to estimate a censoring
            distribution); by default at least one event is required.
        name: what the data is, for the error message (e.g. ``"test set"``).

    Returns:
        ``(time, event)`` as float64 and bool numpy arrays.

    Raises:
        SurvivalDataError: naming the first offending index and value, and the fix.
    """
    t = np.asarray(time.detach().cpu() if _is_tensor(time) else time)
    e = np.asarray(event.detach().cpu() if _is_tensor(event) else event)
    if t.ndim != 1 or e.ndim != 1:
        raise SurvivalDataError(
            f"{name}: expected 1-D time and event arrays, received shapes {t.shape} and "
            f"{e.shape}; pass one value per sample (flatten [n, 1] columns)"
        )
    if t.shape[0] != e.shape[0]:
        raise SurvivalDataError(
            f"{name}: time and event have different lengths ({t.shape[0]} vs {e.shape[0]}); "
            "pass one (time, event) pair per sample"
        )
    if t.shape[0] == 0:
        raise SurvivalDataError(f"{name}: received no samples; pass at least one (time, event)")
    if not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise SurvivalDataError(f"{name}: time must be numeric, received dtype {t.dtype}")
    t = t.astype(np.float64, copy=False)
    if e.dtype != np.bool_:
        if not np.issubdtype(e.dtype, np.number):
            raise SurvivalDataError(
                f"{name}: event must be boolean (True = event observed), received dtype {e.dtype}"
            )
        bad = (e != 0) & (e != 1)
        if bad.any():
            i = _first_bad(bad)
            raise SurvivalDataError(
                f"{name}: event must be boolean or 0/1, received {e[i].item()!r} at index {i}; "
                "encode events as True/1 and censoring as False/0"
            )
        e = e.astype(bool)
    bad = ~np.isfinite(t)
    if bad.any():
        i = _first_bad(bad)
        raise SurvivalDataError(
            f"{name}: time must be finite, received {t[i]} at index {i}; "
            "drop the sample or record its last follow-up time"
        )
    bad = t <= 0
    if bad.any():
        i = _first_bad(bad)
        raise SurvivalDataError(
            f"{name}: time must be > 0, received {t[i]} at index {i}; "
            "times are durations since the index date (events on day 0: use a small positive time)"
        )
    if not allow_all_censored and not e.any():
        raise SurvivalDataError(
            f"{name}: All samples are censored ({e.shape[0]} samples, 0 events); "
            "survival models and metrics need at least one observed event"
        )
    return t, e


def check_survival_tensors(time: Tensor, event: Tensor, *, n: int | None = None) -> Tensor:
    """Validate batch ``time``/``event`` tensors for a loss and return ``event`` as bool.

    Cheap checks only (shape, positivity, finiteness), run on every training step. A batch
    *may* be fully censored: losses return zero for it.

    Args:
        time: ``[B]`` float times > 0.
        event: ``[B]`` bool (or 0/1) event indicator.
        n: expected batch size (length of the model output), if known.
    """
    import torch

    if time.ndim != 1 or event.ndim != 1 or time.shape[0] != event.shape[0]:
        raise SurvivalDataError(
            f"expected time and event of shape [B], received {tuple(time.shape)} and "
            f"{tuple(event.shape)}"
        )
    if n is not None and time.shape[0] != n:
        raise SurvivalDataError(
            f"expected {n} (time, event) pairs to match the model output, received {time.shape[0]}"
        )
    if not torch.is_floating_point(time):
        time = time.double()
    bad = ~torch.isfinite(time) | (time <= 0)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise SurvivalDataError(
            f"time must be finite and > 0, received {float(time[i])} at batch index {i}"
        )
    if event.dtype != torch.bool:
        if bool(((event != 0) & (event != 1)).any()):
            raise SurvivalDataError("event must be bool or 0/1 (True = event observed)")
        event = event.bool()
    return event


@dataclass(frozen=True, eq=False)
class SurvivalTarget:
    """Validated right-censored survival data.

    Attributes:
        time: ``[n]`` float64 follow-up times, finite and > 0.
        event: ``[n]`` bool, True where the event was observed (False = censored).
    """

    time: np.ndarray
    event: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        time: Any,
        event: Any,
        *,
        allow_all_censored: bool = False,
        name: str = "survival target",
    ) -> SurvivalTarget:
        """Build from array-likes (numpy, lists, pandas, torch); see :func:`check_survival_arrays`."""
        t, e = check_survival_arrays(time, event, allow_all_censored=allow_all_censored, name=name)
        t = t.copy()
        e = e.copy()
        t.setflags(write=False)
        e.setflags(write=False)
        return cls(time=t, event=e)

    @classmethod
    def from_structured(cls, y: np.ndarray, **kwargs: Any) -> SurvivalTarget:
        """Build from a scikit-survival structured array (fields: event bool, time float)."""
        if not isinstance(y, np.ndarray) or y.dtype.names is None or len(y.dtype.names) != 2:
            raise SurvivalDataError(
                "expected a structured array with two fields (event indicator, time), as "
                f"sksurv.util.Surv.from_arrays builds; received {type(y).__name__}"
            )
        ev, tm = y.dtype.names
        return cls.from_arrays(y[tm], y[ev], **kwargs)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @property
    def n_events(self) -> int:
        """Number of observed events."""
        return int(self.event.sum())

    def to_structured(self) -> np.ndarray:
        """The scikit-survival structured-array form (``dtype=[('event', bool), ('time', f8)]``)."""
        y = np.empty(len(self), dtype=_STRUCTURED_DTYPE)
        y["event"] = self.event
        y["time"] = self.time
        return y

    def to_tensors(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """``(time [n] dtype, event [n] bool)`` tensors for a loss (default float32)."""
        import torch

        dtype = torch.float32 if dtype is None else dtype
        return torch.as_tensor(self.time, dtype=dtype), torch.as_tensor(self.event)

    def __getitem__(self, index: Any) -> SurvivalTarget:
        return SurvivalTarget.from_arrays(
            self.time[index], self.event[index], allow_all_censored=True
        )
