"""Schemathesis hooks for tests/python/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS): two
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
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and body.get("error") == "INVALID_REQUEST" and body.get("field") == "cursor")
