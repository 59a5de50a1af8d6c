"""hidim.deidentify — DICOM de-identification to the PS3.15 Annex E profile.

Public entry points: :func:`deidentify` (a batch, what ``hidim deid`` runs),
:func:`process_file` (one file), :class:`DeidOptions`, :class:`ProfileOptions`,
:class:`PixelPolicy`, :func:`create_key` / :func:`load_key`. See ``docs/deidentify.md``.
"""

from hidim.deidentify.keys import create_key, load_key
from hidim.deidentify.pipeline import DeidOptions, DeidSummary, deidentify, process_file
from hidim.deidentify.pixels import PixelPolicy
from hidim.deidentify.profile import ProfileOptions

__all__ = [
    "DeidOptions",
    "DeidSummary",
    "PixelPolicy",
    "ProfileOptions",
    "create_key",
    "deidentify",
    "load_key",
    "process_file",
]
