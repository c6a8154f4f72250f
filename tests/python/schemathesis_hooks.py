"""Schemathesis hooks for tests/python/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS): five
things a schema cannot say, so that what Schemathesis reports is the server's or the document's
fault, not the fuzzer's.

1. A fresh Idempotency-Key per request. Schemathesis draws the header's values from a small space
and sends the same key with different requests; Outbound then answers 422
IDEMPOTENCY_KEY_REUSED, as contract §7 says it must, and Schemathesis reports a valid request
rejected. A real client sends a new key (a UUID, as Altur recommends) for each new request, so
every key Outbound would accept is replaced by a new UUID; keys it must reject (empty, over 255
characters, not printable ASCII) are left as generated, so that their rejection is still tested.

2. A list cursor the server did not issue. Cursors are opaque and a tampered one is refused with
400 (contract §2.4); no schema can tell a fuzzer which strings the server issued, so a
"schema-valid request rejected" whose answer is that 400 on `cursor` is dropped. Every other
failure is kept.

3. Three cross-field rules of campaign bodies (an active day's stopTime differs from its
startTime; schedule_start_date is not after schedule_end_date; contact_hours.start is before
contact_hours.end): bodies that break them are not generated.

4. What a PATCH is checked against besides its body: the stored campaign (immutable fields keep
their value, channel-only fields fit its channel, cycle and schedule fields fit its cycles; the
operation's description says so). Those 400s are the server being right.

5. Phone numbers (contract §12.1). Whether a string is a phone number (with `+`, or in the
organization's region) and whether two letters name a region of the numbering plan is the
numbering plan's to say, not a pattern's: a 400 on a do-not-contact route whose `field` is the
number (`contact`, in its path or query) or `region` is the server being right. (A batch's bad
numbers are per-entry results, not 400s, and are still checked.)
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    for name, value in list((case.headers or {}).items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and _VALID_KEY.fullmatch(value):
            case.headers[name] = str(uuid.uuid4())


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if getattr(failure, "code", None) != "ST202" or response is None or response.status_code != 400:
        return True
    # The coverage phase builds bodies without filter_body: its 400 on a cross-field rule is right.
    if _breaks_cross_field_rules(getattr(case, "body", None)):
        return False
    try:
        answer = response.json()
    except ValueError:
        return True
    # A PATCH is checked against the stored campaign (the operation's description says how),
    # which no schema of the body can know.
    if not isinstance(answer, dict):
        return True
    if getattr(case, "method", "").upper() == "PATCH" and (
        answer.get("error") in _STATE_ERRORS or answer.get("field") in _CHANNEL_FIELDS
    ):
        return False
    if answer.get("error") == "INVALID_REQUEST" and answer.get("field") in _NUMBER_FIELDS and "/dnc" in _path(case):
        return False
    return not (answer.get("error") == "INVALID_REQUEST" and answer.get("field") == "cursor")


_NUMBER_FIELDS = {"contact", "region"}


def _path(case: Any) -> str:
    operation = getattr(case, "operation", None)
    return str(getattr(operation, "path", "") or getattr(case, "path", "") or "")


_STATE_ERRORS = {"IMMUTABLE_FIELD", "CYCLES_NOT_ENABLED", "SCHEDULED_MODE_ONLY"}
_CHANNEL_FIELDS = {"first_message", "concurrency_limit", "template", "template_alt", "cycles.enabled"}


def _days(body: Any) -> list[Any]:
    """The day objects of a campaign body's week schedules (`scheduling`, `cycles.schedule`)."""
    if not isinstance(body, dict):
        return []
    weeks = [body.get("scheduling")]
    cycles = body.get("cycles")
    if isinstance(cycles, dict):
        weeks.append(cycles.get("schedule"))
    return [day for week in weeks if isinstance(week, dict) for day in week.values() if isinstance(day, dict)]


def _breaks_cross_field_rules(body: Any) -> bool:
    """Whether a campaign body breaks a rule of §2.5, §2.6 or §12.2 that JSON Schema cannot state
    and the document states in words: an active day's stopTime differs from its startTime,
    schedule_start_date is not after schedule_end_date, and contact_hours.start is before its end."""
    for day in _days(body):
        if (
            day.get("active") is not False
            and day.get("startTime") is not None
            and day.get("startTime") == day.get("stopTime")
        ):
            return True
    cycles = body.get("cycles") if isinstance(body, dict) else None
    if isinstance(cycles, dict):
        start, end = cycles.get("schedule_start_date"), cycles.get("schedule_end_date")
        if isinstance(start, str) and isinstance(end, str) and start > end:
            return True
    hours = body.get("contact_hours") if isinstance(body, dict) else None
    if isinstance(hours, dict):
        start, end = hours.get("start"), hours.get("end")
        if isinstance(start, str) and isinstance(end, str) and start >= end:
            return True
    return False


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    return not _breaks_cross_field_rules(body)
