"""The record service: FHIR resources stored encrypted off chain, anchored, consented, audited.

* :mod:`.service` — :class:`FileRecordService` (implements ``node.records_api.RecordService``)
  and :func:`open_record_service`;
* :mod:`.index` — the service's local SQLite index (``DIR/records/index.sqlite``).
"""

from carechain.node.records.index import RecordIndex, RecordRow, VersionRow
from carechain.node.records.service import (
    ACCOUNT_SYSTEM,
    FileRecordService,
    open_record_service,
)

__all__ = [
    "ACCOUNT_SYSTEM",
    "FileRecordService",
    "RecordIndex",
    "RecordRow",
    "VersionRow",
    "open_record_service",
]
