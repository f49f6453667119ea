"""FHIR date/dateTime/instant ↔ Unix milliseconds (UTC).

A partial date stands for the whole interval it names: as a period ``start`` it means the
first millisecond of that interval, as a period ``end`` the first millisecond *after* it
(ends are exclusive in carechain). A dateTime with a time must carry a zone (FHIR rule).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def fhir_time_to_ms(text: str, *, end: bool = False) -> int:
    """Unix ms of a FHIR date/dateTime; ``end`` gives the exclusive end of a partial value."""
    m = _DATE.match(text)
    if m:
        y, mo, d = int(m[1]), int(m[2] or 1), int(m[3] or 1)
        start = datetime(y, mo, d, tzinfo=UTC)
        if not end:
            return _ms(start)
        if m[3]:
            nxt = start + timedelta(days=1)
        elif m[2]:
            nxt = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC)
        else:
            nxt = datetime(y + 1, 1, 1, tzinfo=UTC)
        return _ms(nxt)
    m = _DATETIME.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a FHIR date or dateTime with a time zone")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    ms = _ms(moment)
    if end and m[6] is None:  # minute precision: through the end of that minute
        return ms + 60_000
    if end and m[7] is None:  # second precision
        return ms + 1_000
    return ms + 1 if end else ms


def ms_to_instant(ms: int) -> str:
    """FHIR ``instant`` (UTC, millisecond precision) of Unix ms."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ms_to_date(ms: int) -> str:
    """FHIR ``date`` (UTC day) of Unix ms."""
    return date.isoformat((_EPOCH + timedelta(milliseconds=ms)).date())
