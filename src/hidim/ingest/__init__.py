"""hidim.ingest — find DICOM, group it into series, decode pixels to float32 ``[C, T, H, W]``.

Public API (see ``docs/ingest.md``)::

    from hidim.ingest import scan, read_series, read_file

    result = scan("/data/dicom")             # header-only; never raises on bad files
    for series in result.series:             # SeriesInfo: ordered files, spacing, layout
        array, meta = read_series(series)    # float32 [C, T, H, W]; ScanMetadata
        row = meta.to_row()                  # manifest columns
    problems = [e for e in result.ledger if e.status != "ok"]
"""

from hidim.ingest.metadata import MANIFEST_COLUMNS, ScanMetadata
from hidim.ingest.mrseq import MRSequence, classify_mr_sequence
from hidim.ingest.pixels import PixelInfo, decode_pixels
from hidim.ingest.reader import read_file, read_series
from hidim.ingest.scan import LedgerEntry, ScanResult, scan
from hidim.ingest.series import SeriesInfo
from hidim.ingest.views import view_from_text

__all__ = [
    "MANIFEST_COLUMNS",
    "LedgerEntry",
    "MRSequence",
    "PixelInfo",
    "ScanMetadata",
    "ScanResult",
    "SeriesInfo",
    "classify_mr_sequence",
    "decode_pixels",
    "read_file",
    "read_series",
    "scan",
    "view_from_text",
]
