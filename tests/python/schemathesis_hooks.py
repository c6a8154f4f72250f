"""Schemathesis hooks for tests/python/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

A fresh Idempotency-Key per request. Schemathesis draws the header's values from a small space
and sends the same key with different requests; Outbound then answers 422
IDEMPOTENCY_KEY_REUSED, as contract §7 says it must, and Schemathesis reports a valid request
rejected. A real client sends a new key (a UUID, as Altur recommends) for each new request, so
every key Outbound would accept is replaced by a new UUID; keys it must reject (empty, over 255
characters, not printable ASCII) are left as generated, so that their rejection is still tested.
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
