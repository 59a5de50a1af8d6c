"""Error hierarchy: one root, one subclass per pipeline stage.

Every message says what was expected, what was received and how to fix it. Raise these at
public boundaries instead of ``assert`` (which vanishes under ``python -O``).
"""

from __future__ import annotations

__all__ = [
    "HidimError",
    "ConfigError",
    "IngestError",
    "UnsupportedSOPClassError",
    "DeidentificationError",
    "CurationError",
    "StoreError",
    "LabelError",
    "ModelError",
    "TaskError",
    "SurvivalDataError",
    "TrainingError",
    "EvaluationError",
    "ExplainError",
    "FederatedError",
    "ReportError",
    "PhantomError",
]


class HidimError(Exception):
    """Root of every error hidim raises on purpose."""


class ConfigError(HidimError, ValueError):
    """A configuration file or option is invalid."""


class IngestError(HidimError):
    """A DICOM file or series cannot be read as expected."""


class UnsupportedSOPClassError(IngestError):
    """The file is valid DICOM but not an image hidim handles (SR, waveform, ...)."""


class DeidentificationError(HidimError):
    """De-identification of a file could not be completed safely."""


class CurationError(HidimError):
    """Curation (normalisation, splitting, manifest building) failed."""


class StoreError(HidimError):
    """A hidim store is missing, incomplete or inconsistent."""


class LabelError(HidimError, ValueError):
    """A label / annotation file does not match what hidim expects."""


class ModelError(HidimError):
    """A model, backbone or weight file is invalid or unavailable."""


class TaskError(HidimError, ValueError):
    """Inputs to a head, loss or task are invalid."""


class SurvivalDataError(TaskError):
    """Survival targets (time, event) are invalid."""


class TrainingError(HidimError):
    """Training could not run as configured."""


class EvaluationError(HidimError, ValueError):
    """Metric inputs are invalid."""


class ExplainError(HidimError):
    """An explanation or sanity check could not be computed."""


class FederatedError(HidimError):
    """Federated training could not run as configured."""


class ReportError(HidimError):
    """The readiness report could not be built from a run directory."""


class PhantomError(HidimError, ValueError):
    """Phantom generation parameters are invalid."""
