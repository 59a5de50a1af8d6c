"""hidim: clinically translatable AI for high-dimensional medical imaging.

The package follows the pipeline of Shad et al. (Nat. Mach. Intell. 3, 929-935, 2021):
``ingest`` → ``deidentify`` → ``store``/``curate`` → ``models``/``tasks`` → ``evaluate`` →
``training`` → ``explain`` → ``report``. See ``docs/architecture.md`` for the map.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
