#!/usr/bin/env python3
"""Outbound as Altur's customers see it: through a client generated from Altur's OpenAPI.

The client is the one openapi-python-client generates from Altur's published document
(tests/api/fixtures/altur-openapi.json; tests/python/setup.sh generates it into the venv as
`altur_client`). Contract §0.2: such a client must parse every 2xx response of the campaign
endpoints. This script, run by the venv's python against a running server:

  - makes an agent and two integrations (phone_call and whatsapp, simulator provider) with plain
    httpx: they are Outbound extensions, not in Altur's document;
  - then, only through the generated client's typed API functions: runs the seed examples (create
    campaign, phone with cooldown cycles and WhatsApp; retrieve campaign) and every campaign,
    contact and call operation, with their filters and paging, lets the engine dispatch a phone
    campaign (open all week) to the simulator, and lists the calls once they have finished.

For every 2xx response it checks the status code, that the client parsed the body into the
expected model (not None, not an error model), that the parsed model holds no `null` (nor value
of another type) where Altur's document does not allow one — openapi-python-client lets a null
through in a plain string or integer field, while the clients other generators make (TypeScript,
Java, Go) reject it — and a few values. It goes on after a failure, prints one line per
operation, and exits 1 at the end if anything failed (2 on a usage error).

Environment: OUTBOUND_URL (the server, `http://127.0.0.1:8080`; `/api/v1.0` is added unless
given), OUTBOUND_API_KEY (a key of an organization; the run makes its own agent, integrations and
campaigns in it), OUTBOUND_CALLS_TIMEOUT (seconds to wait for the calls to finish, default 60).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
import traceback
import types
import typing
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import httpx

try:
    from altur_client import AuthenticatedClient
    from altur_client import models as m
    from altur_client.api.default import (
        delete_campaigns_id_contacts_contact_id,
        get_campaigns,
        get_campaigns_id,
        get_campaigns_id_calls,
        get_campaigns_id_contacts,
        get_campaigns_id_contacts_contact_id,
        patch_campaigns_id,
        post_campaigns,
        post_campaigns_id_action,
        post_campaigns_id_contacts,
    )
    from altur_client.types import UNSET, Unset
except ImportError as exc:
    sys.exit(f"the generated client is missing ({exc}): run `bash tests/python/setup.sh` and use its venv's python")

# ---------------------------------------------------------------------------------------------
# Strict check of a parsed model against the types the generator declared from Altur's document.

_NAMESPACE: dict[str, Any] = {name: getattr(m, name) for name in dir(m) if not name.startswith("_")}
_NAMESPACE.update({"datetime": dt, "Unset": Unset, "Any": Any})
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        namespace = dict(vars(sys.modules[cls.__module__]))
        namespace.update(_NAMESPACE)
        _HINTS[cls] = typing.get_type_hints(cls, globalns=namespace)
    return _HINTS[cls]


def strict_problems(value: Any, hint: Any, path: str) -> list[str]:
    """What in `value` a strictly typed client would reject, given the declared type `hint`."""
    if hint is Any or hint is object:
        return []
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if isinstance(value, Unset):
            return [] if Unset in options else [f"{path}: left out, but the document requires it"]
        if value is None:
            return [] if type(None) in options else [f"{path}: null, where the generated type has no null"]
        concrete = [o for o in options if o not in (Unset, type(None))]
        results = [strict_problems(value, o, path) for o in concrete]
        return [] if any(not r for r in results) else results[0]
    if isinstance(value, Unset):
        return [f"{path}: left out, but the document requires it"]
    if value is None:
        return [f"{path}: null, where the generated type has no null"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} {value!r}, expected an array"]
        (item,) = typing.get_args(hint) or (Any,)
        return [p for i, v in enumerate(value) for p in strict_problems(v, item, f"{path}[{i}]")]
    if origin is dict or hint is dict:
        return [] if isinstance(value, dict) else [f"{path}: {value!r}, expected an object"]
    if not isinstance(hint, type):
        return []
    if attrs.has(hint):
        if not isinstance(value, hint):
            return [f"{path}: {type(value).__name__}, expected {hint.__name__}"]
        hints = _hints(hint)
        problems = []
        for field in attrs.fields(hint):
            if field.name == "additional_properties":
                continue
            problems += strict_problems(
                getattr(value, field.name), hints[field.name], f"{path}.{field.name.rstrip('_')}"
            )
        return problems
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return [] if ok else [f"{path}: {value!r} ({type(value).__name__}), expected {hint.__name__}"]


# ---------------------------------------------------------------------------------------------
# Where a body breaks Altur's document: names the field and the reason (the generated client's
# own error names neither).

ALTUR_OPENAPI = Path(__file__).resolve().parent.parent / "api" / "fixtures" / "altur-openapi.json"
_DOCUMENT: dict[str, Any] = json.loads(ALTUR_OPENAPI.read_text())
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:  # OpenAPI 3.0: a $ref's siblings are ignored
        schema = _DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        for part in schema["allOf"]:
            merged["properties"].update(_resolve(part).get("properties", {}))
        return merged
    return schema


def document_problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """What in the JSON `value` Altur's document (read strictly) does not allow."""
    schema = _resolve(schema)
    if value is None:
        if not schema.get("nullable"):
            return [f"{path}: null, but Altur's document does not mark it nullable (leave it out when absent)"]
        if "enum" in schema and None not in schema["enum"]:
            reason = "so generated clients reject null (OpenAPI 3.0.3: nullable does not extend an enum)"
            return [f"{path}: null; Altur marks it nullable, but its enum {schema['enum']} has no null, {reason}"]
        return []
    kind = schema.get("type")
    if kind in _JSON_TYPES and (
        not isinstance(value, _JSON_TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool))
    ):
        return [f"{path}: {short(value, 80)} is not of type {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += document_problems(item, properties[key], f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += document_problems(item, schema.get("items", {}), f"{path}[{i}]")
    return problems


def parse_location(exc: BaseException) -> str:
    """Where in the generated client parsing failed: its deepest frame in the client's models."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "altur_client" in f.filename]
    if not frames:
        return "outside the generated client"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} `{(frame.line or '').strip()}`"


# ---------------------------------------------------------------------------------------------
# The run: every operation goes through `Run.call`, which checks and reports it.


@dataclass
class Reply:
    """What one operation answered: the parsed model (None when parsing failed), the raw body."""

    parsed: Any
    body: Any
    status: int | None
    ok: bool


def short(body: Any, limit: int = 600) -> str:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "…"


def unset(value: Any) -> bool:
    return isinstance(value, Unset)


def absent(value: Any) -> bool:
    """Left out; or null, which the strict check has reported already where it is not allowed."""
    return value is None or isinstance(value, Unset)


class Run:
    def __init__(self, url: str, key: str) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/api/v1.0") else base + "/api/v1.0"
        self.last: httpx.Response | None = None

        def remember(response: httpx.Response) -> None:
            response.read()
            self.last = response

        timeout = httpx.Timeout(30.0)
        self.client = AuthenticatedClient(
            base_url=self.base,
            token=key,
            prefix="api-key",
            timeout=timeout,
            httpx_args={"event_hooks": {"response": [remember]}},
        )
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"api-key {key}"}, timeout=timeout)
        self.passed = 0
        self.failures: list[str] = []
        self.by_field: Counter[str] = Counter()
        self.started = dt.datetime.now(dt.UTC)
        self.tag = uuid.uuid4().hex[:6]

    # -- reporting

    def fail(self, label: str, message: str) -> None:
        self.failures.append(f"{label}: {message}")
        print(f"FAIL {label}\n     {message}", flush=True)

    def expect(self, label: str, condition: bool, message: str) -> bool:
        """A value check on an operation that already answered; reported only when it fails."""
        if not condition:
            self.fail(label, message)
        return condition

    def _last_body(self) -> Any:
        if self.last is None or not self.last.content:
            return None
        try:
            return self.last.json()
        except ValueError:
            return self.last.text

    # -- one operation of Altur's document, through the generated client

    def call(
        self, label: str, operation: Any, expected: int, model: type | None, quiet: bool = False, **kwargs: Any
    ) -> Reply:
        """Calls `operation.sync_detailed` and checks the status, the parsed model and its types.

        `model` None: a response without a body (204). `quiet`: report nothing (polling)."""
        self.last = None
        try:
            response = operation.sync_detailed(client=self.client, **kwargs)
        except httpx.HTTPError as exc:
            if not quiet:
                self.fail(label, f"request failed: {exc}")
            return Reply(None, None, None, False)
        except Exception as exc:  # noqa: BLE001 (whatever the generated client's parsing raised)
            body = self._last_body()
            code = self.last.status_code if self.last is not None else None
            if not quiet:
                where = (
                    document_problems(body, {"$ref": f"#/components/schemas/{model.__name__}"}, model.__name__)
                    if model
                    else []
                )
                self.fail(
                    label,
                    f"the generated client could not parse the {code} response: {type(exc).__name__}: {exc} "
                    f"(in {parse_location(exc)})" + self._listed(where) + f"\n     body: {short(body, 300)}",
                )
            return Reply(None, body, code, False)
        body = self._last_body()
        code = int(response.status_code)
        problems: list[str] = []
        if code != expected:
            problems.append(f"answered {code}, expected {expected}; body: {short(body)}")
        elif model is None:
            pass
        elif response.parsed is None:
            problems.append(f"the generated client parsed nothing (None) from the {code} response; body: {short(body)}")
        elif not isinstance(response.parsed, model):
            problems.append(
                f"parsed as {type(response.parsed).__name__}, expected {model.__name__}; body: {short(body)}"
            )
        elif 200 <= code < 300:
            # Contract §0.2 holds for 2xx bodies; an error body is only required to parse (§0.1's
            # envelope has `field: null` on purpose).
            strict = strict_problems(response.parsed, model, model.__name__)
            where = document_problems(body, {"$ref": f"#/components/schemas/{model.__name__}"}, model.__name__)
            if strict or where:
                problems.append(
                    "parsed, but a strictly typed client (TypeScript, Java, Go generators) would reject it:"
                    + self._listed(where or strict)
                    + f"\n     body: {short(body, 300)}"
                )
        if problems:
            if not quiet:
                self.fail(label, "\n     ".join(problems))
            parsed = response.parsed if code == expected else None
            return Reply(parsed, body, code, False)
        if not quiet:
            self.passed += 1
            print(f"ok   {label} → {code} {model.__name__ if model else '(no body)'}", flush=True)
        return Reply(response.parsed, body, code, True)

    def _listed(self, problems: list[str]) -> str:
        """The problems, one a line, also counted by field for the closing digest."""
        for problem in problems:
            self.by_field[re.sub(r"\[\d+\]", "[]", problem)] += 1
        return "".join(f"\n       {p}" for p in problems)

    # -- the extensions, with plain httpx

    def ext_post(self, label: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=payload)
        if response.status_code != 201:
            raise SystemExit(f"setup failed: {label}: POST {path} answered {response.status_code}: {response.text}")
        print(f"ok   {label} (extension, plain httpx) → 201", flush=True)
        return response.json()


# ---------------------------------------------------------------------------------------------
# Test data.


def day(start: str, stop: str, active: bool = True) -> m.CampaignScheduleDay:
    return m.CampaignScheduleDay(start_time=start, stop_time=stop, active=active)


def week(start: str, stop: str, weekend: bool = True) -> m.CampaignSchedule:
    return m.CampaignSchedule(
        mon=day(start, stop),
        tue=day(start, stop),
        wed=day(start, stop),
        thu=day(start, stop),
        fri=day(start, stop),
        sat=day(start, stop, weekend),
        sun=day(start, stop, weekend),
    )


def always_open() -> m.CampaignSchedule:
    """Open at every instant, so the engine (real clock) dispatches at once."""
    return week("00:00", "24:00")


GOOD_NUMBERS = [f"+5255123456{i:02d}" for i in range(20)]
PHONE_STATUSES = ("queue", "sending", "answered", "voicemail", "failed", "retrying", "converted")
FINAL_CALL_STATUSES = ("ended", "failed", "busy", "no-answer")


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def campaign_id(reply: Reply) -> int:
    """The id of a created campaign, from the parsed model or else from the raw body, so that the
    run goes on after a parse failure."""
    if reply.parsed is not None and not unset(reply.parsed.campaign) and isinstance(reply.parsed.campaign.id, int):
        return reply.parsed.campaign.id
    try:
        return int(reply.body["campaign"]["id"])
    except (TypeError, KeyError, ValueError):
        raise SystemExit(f"cannot go on: no campaign id in {short(reply.body)}")


def detail_of(reply: Reply) -> Any:
    """The CampaignDetail of a reply, or None when it did not parse."""
    if reply.parsed is None or not isinstance(reply.parsed, m.CampaignDetailResponse) or unset(reply.parsed.campaign):
        return None
    return reply.parsed.campaign


def status_of(reply: Reply) -> str | None:
    if isinstance(reply.body, dict) and isinstance(reply.body.get("campaign"), dict):
        return reply.body["campaign"].get("status")
    return None


# ---------------------------------------------------------------------------------------------
# The scenario.


def main() -> int:
    url, key = os.environ.get("OUTBOUND_URL"), os.environ.get("OUTBOUND_API_KEY")
    if not url or not key:
        print(
            "usage: OUTBOUND_URL=http://127.0.0.1:8080 OUTBOUND_API_KEY=ob_… python altur_client_test.py",
            file=sys.stderr,
        )
        return 2
    calls_timeout = float(os.environ.get("OUTBOUND_CALLS_TIMEOUT", "60"))
    run = Run(url, key)
    print(f"Outbound at {run.base}, through the client generated from Altur's OpenAPI (run {run.tag})", flush=True)

    # -- Outbound extensions: an agent and one integration per channel (simulator).
    agent = run.ext_post("POST /agents", "/agents", {"name": f"Python client {run.tag}"})["agent"]
    phone = run.ext_post(
        "POST /integrations (phone_call, simulator)",
        "/integrations",
        {
            "agent_id": agent["id"],
            "type": "phone_call",
            "provider": "simulator",
            "config": {"latency_ms": 0, "answer_rate": 0.5},
        },
    )["integration"]
    whatsapp = run.ext_post(
        "POST /integrations (whatsapp, simulator)",
        "/integrations",
        {"agent_id": agent["id"], "type": "whatsapp", "provider": "simulator", "config": {"latency_ms": 0}},
    )["integration"]
    agent_id, phone_id, whatsapp_id = agent["id"], phone["id"], whatsapp["id"]

    def check_detail(
        label: str, reply: Reply, name: str | None = None, status: str | None = None, channel: str | None = None
    ) -> Any:
        """Value checks common to every detail response; returns the CampaignDetail or None."""
        campaign = detail_of(reply)
        if campaign is None:
            return None
        run.expect(label, reply.parsed.success is True, f"success is {reply.parsed.success!r}")
        run.expect(label, isinstance(campaign.id, int), f"campaign.id is {campaign.id!r}")
        if name is not None:
            run.expect(label, campaign.name == name, f"campaign.name is {campaign.name!r}, expected {name!r}")
        if status is not None:
            run.expect(label, campaign.status == status, f"campaign.status is {campaign.status!r}, expected {status!r}")
        if channel is not None:
            integration = campaign.integration
            run.expect(
                label,
                integration is not None and not unset(integration) and integration.type_ == channel,
                f"campaign.integration is {integration!r}, expected type {channel!r}",
            )
        run.expect(
            label, not unset(campaign.agent) and campaign.agent.id == agent_id, f"campaign.agent is {campaign.agent!r}"
        )
        run.expect(label, isinstance(campaign.created_at, dt.datetime), f"created_at is {campaign.created_at!r}")
        scheduling = campaign.scheduling
        run.expect(
            label,
            not unset(scheduling)
            and all(not unset(getattr(scheduling, d)) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
            f"scheduling does not list all seven days: {scheduling!r}",
        )
        run.expect(label, not unset(campaign.cycles), "cycles is left out (always present, §2.3)")
        return campaign

    # -- The seed examples (tests/shared seeds: create campaign, retrieve campaign).
    key_header = str(uuid.uuid4())
    seed_phone_body = m.CampaignCreate(
        name="Q2 Reactivation",
        agent_id=agent_id,
        integration_id=phone_id,
        integration_type=m.CampaignCreateIntegrationType.PHONE_CALL,
        timezone="America/Mexico_City",
        first_message="Hi, am I speaking with {name}?",
        cycles=m.CampaignCyclesConfig(
            enabled=True,
            mode=m.CampaignCyclesConfigMode.COOLDOWN,
            max_iterations=3,
            cooldown_minutes=30,
            filter_statuses=["converted"],
        ),
    )
    label = "seed: POST /campaigns (phone, cooldown cycles, Idempotency-Key)"
    reply = run.call(
        label, post_campaigns, 201, m.CampaignDetailResponse, body=seed_phone_body, idempotency_key=key_header
    )
    seed_phone = campaign_id(reply)
    campaign = check_detail(label, reply, "Q2 Reactivation", "pending", "phone_call")
    if campaign is not None:
        cycles = campaign.cycles
        run.expect(label, cycles.enabled is True and cycles.mode == "cooldown", f"cycles {cycles!r}")
        run.expect(label, cycles.max_iterations == 3 and cycles.cooldown_minutes == 30, f"cycles {cycles!r}")
        run.expect(label, cycles.filter_statuses == ["converted"], f"cycles.filter_statuses {cycles.filter_statuses!r}")
        run.expect(
            label,
            absent(cycles.schedule),
            f"cycles.schedule should be left out in cooldown mode, is {cycles.schedule!r}",
        )
        run.expect(label, absent(campaign.analytics), "analytics should be left out before the first activation")
        run.expect(
            label,
            campaign.additional_properties.get("first_message") == "Hi, am I speaking with {name}?",
            "first_message",
        )
    label = "seed: POST /campaigns again with the same Idempotency-Key (replay)"
    reply = run.call(
        label, post_campaigns, 201, m.CampaignDetailResponse, body=seed_phone_body, idempotency_key=key_header
    )
    run.expect(
        label, campaign_id(reply) == seed_phone, f"replay created campaign {campaign_id(reply)}, not {seed_phone}"
    )
    run.expect(
        label,
        run.last is not None and run.last.headers.get("Idempotent-Replayed") == "true",
        "no Idempotent-Replayed: true",
    )

    label = "seed: POST /campaigns (whatsapp, template)"
    reply = run.call(
        label,
        post_campaigns,
        201,
        m.CampaignDetailResponse,
        body=m.CampaignCreate(
            name="Promo June",
            agent_id=agent_id,
            integration_id=whatsapp_id,
            integration_type=m.CampaignCreateIntegrationType.WHATSAPP,
            template="promo_june_v1",
        ),
    )
    seed_whatsapp = campaign_id(reply)
    campaign = check_detail(label, reply, "Promo June", "pending", "whatsapp")
    if campaign is not None:
        run.expect(label, campaign.additional_properties.get("template") == "promo_june_v1", "template")

    label = f"seed: GET /campaigns/{seed_phone}"
    reply = run.call(label, get_campaigns_id, 200, m.CampaignDetailResponse, id=seed_phone)
    campaign = check_detail(label, reply, "Q2 Reactivation", "pending", "phone_call")
    if campaign is not None:
        run.expect(label, campaign.id == seed_phone, f"id {campaign.id}")
        run.expect(label, campaign.agent.name == f"Python client {run.tag}", f"agent.name {campaign.agent.name!r}")

    # -- Create: phone with cooldown cycles, open all week (this one is dispatched below).
    main_name = f"Reactivation {run.tag}"
    label = "POST /campaigns (phone, cooldown cycles, open all week)"
    reply = run.call(
        label,
        post_campaigns,
        201,
        m.CampaignDetailResponse,
        body=m.CampaignCreate(
            name=main_name,
            description="Made by tests/python/altur_client_test.py",
            agent_id=agent_id,
            integration_id=phone_id,
            integration_type=m.CampaignCreateIntegrationType.PHONE_CALL,
            timezone="UTC",
            retries=1,
            message_limit=1000,
            first_message="Hola {name}",
            scheduling=always_open(),
            cycles=m.CampaignCyclesConfig(
                enabled=True,
                mode=m.CampaignCyclesConfigMode.COOLDOWN,
                max_iterations=2,
                cooldown_minutes=60,
                filter_statuses=["converted"],
                filter_tags=["do-not-call"],
            ),
        ),
    )
    main_id = campaign_id(reply)
    campaign = check_detail(label, reply, main_name, "pending", "phone_call")
    if campaign is not None:
        run.expect(label, campaign.scheduling.sun.stop_time == "24:00", f"scheduling.sun {campaign.scheduling.sun!r}")
        run.expect(label, campaign.cycles.max_iterations == 2, f"cycles {campaign.cycles!r}")
        run.expect(label, campaign.additional_properties.get("description") is not None, "description")

    # -- Create: phone with scheduled-mode cycles and a schedule.
    start_date = dt.date.today() + dt.timedelta(days=1)
    end_date = start_date + dt.timedelta(days=30)
    label = "POST /campaigns (phone, scheduled-mode cycles with a schedule)"
    reply = run.call(
        label,
        post_campaigns,
        201,
        m.CampaignDetailResponse,
        body=m.CampaignCreate(
            name=f"Scheduled {run.tag}",
            agent_id=agent_id,
            integration_id=phone_id,
            integration_type=m.CampaignCreateIntegrationType.PHONE_CALL,
            timezone="America/Mexico_City",
            scheduling=week("09:00", "18:00", weekend=False),
            cycles=m.CampaignCyclesConfig(
                enabled=True,
                mode=m.CampaignCyclesConfigMode.SCHEDULED,
                max_iterations=4,
                schedule=week("10:00", "12:00", weekend=False),
                schedule_start_date=start_date,
                schedule_end_date=end_date,
            ),
        ),
    )
    scheduled_id = campaign_id(reply)
    campaign = check_detail(label, reply, f"Scheduled {run.tag}", "pending", "phone_call")
    if campaign is not None:
        cycles = campaign.cycles
        run.expect(label, cycles.mode == "scheduled", f"cycles.mode {cycles.mode!r}")
        run.expect(
            label,
            not unset(cycles.schedule) and cycles.schedule.mon.start_time == "10:00",
            f"cycles.schedule {cycles.schedule!r}",
        )
        run.expect(label, not unset(cycles.schedule) and cycles.schedule.sat.active is False, "cycles.schedule.sat")
        run.expect(
            label,
            cycles.schedule_start_date == start_date and cycles.schedule_end_date == end_date,
            f"schedule dates {cycles.schedule_start_date!r}..{cycles.schedule_end_date!r}",
        )
        run.expect(label, campaign.scheduling.sat.active is False, f"scheduling.sat {campaign.scheduling.sat!r}")

    # -- Create: WhatsApp with a template (and an alternate one), open all week.
    label = "POST /campaigns (whatsapp, template + template_alt, open all week)"
    reply = run.call(
        label,
        post_campaigns,
        201,
        m.CampaignDetailResponse,
        body=m.CampaignCreate(
            name=f"WhatsApp {run.tag}",
            agent_id=agent_id,
            integration_id=whatsapp_id,
            integration_type=m.CampaignCreateIntegrationType.WHATSAPP,
            timezone="UTC",
            template="welcome_v1",
            template_alt="welcome_v1_alt",
            scheduling=always_open(),
        ),
    )
    whatsapp_campaign = campaign_id(reply)
    campaign = check_detail(label, reply, f"WhatsApp {run.tag}", "pending", "whatsapp")
    if campaign is not None:
        run.expect(label, campaign.additional_properties.get("template_alt") == "welcome_v1_alt", "template_alt")

    ours = {seed_phone, seed_whatsapp, main_id, scheduled_id, whatsapp_campaign}

    # -- Retrieve each.
    for cid in (main_id, scheduled_id, whatsapp_campaign):
        label = f"GET /campaigns/{cid}"
        check_detail(label, run.call(label, get_campaigns_id, 200, m.CampaignDetailResponse, id=cid))
    label = "GET /campaigns/999999999 (unknown id)"
    reply = run.call(label, get_campaigns_id, 404, m.CampaignApiError, id=999999999)
    if reply.ok:
        run.expect(label, reply.parsed.error == "NOT_FOUND", f"error {reply.parsed.error!r}")

    # -- Update (PATCH).
    label = f"PATCH /campaigns/{main_id}"
    new_name = f"Reactivation {run.tag} (renamed)"
    reply = run.call(
        label,
        patch_campaigns_id,
        200,
        m.CampaignDetailResponse,
        id=main_id,
        body=m.CampaignUpdate(
            name=new_name,
            description="Renamed by the generated client",
            retries=0,
            message_limit=500,
            first_message="Hola {name}, ¿tienes un minuto?",
            scheduling=always_open(),
            cycles=m.CampaignCyclesConfig(cooldown_minutes=90, filter_statuses=["converted", "answered"]),
        ),
    )
    campaign = check_detail(label, reply, new_name, "pending", "phone_call")
    if campaign is not None:
        run.expect(
            label,
            campaign.cycles.cooldown_minutes == 90,
            f"cycles.cooldown_minutes {campaign.cycles.cooldown_minutes!r}",
        )
        run.expect(
            label, campaign.cycles.max_iterations == 2, "cycles.max_iterations changed by a PATCH that did not touch it"
        )
        run.expect(label, campaign.cycles.filter_statuses == ["converted", "answered"], "cycles.filter_statuses")
        run.expect(label, campaign.additional_properties.get("retries") == 0, "retries")
        run.expect(label, campaign.additional_properties.get("message_limit") == 500, "message_limit")
    label = f"PATCH /campaigns/{scheduled_id} (cycles.schedule, schedule_end_date)"
    reply = run.call(
        label,
        patch_campaigns_id,
        200,
        m.CampaignDetailResponse,
        id=scheduled_id,
        body=m.CampaignUpdate(
            cycles=m.CampaignCyclesConfig(
                schedule=week("11:00", "13:00"), schedule_end_date=end_date + dt.timedelta(days=1)
            )
        ),
    )
    campaign = check_detail(label, reply, status="pending")
    if campaign is not None and not unset(campaign.cycles.schedule):
        run.expect(label, campaign.cycles.schedule.sat.active is True, "cycles.schedule.sat not replaced")
        run.expect(label, campaign.cycles.schedule_end_date == end_date + dt.timedelta(days=1), "schedule_end_date")
    label = f"PATCH /campaigns/{whatsapp_campaign} (template)"
    reply = run.call(
        label,
        patch_campaigns_id,
        200,
        m.CampaignDetailResponse,
        id=whatsapp_campaign,
        body=m.CampaignUpdate(template="welcome_v2"),
    )
    campaign = check_detail(label, reply, status="pending", channel="whatsapp")
    if campaign is not None:
        run.expect(label, campaign.additional_properties.get("template") == "welcome_v2", "template")

    # -- Contacts: a batch with good numbers, a duplicate and an invalid number.
    Item = m.CampaignContactBatchCreateContactsItem
    items = [
        Item(
            contact=GOOD_NUMBERS[0],
            name="Ana",
            context="Owes 1000 MXN since March",
            f_id="crm-0",
            extracted_data=m.CampaignContactBatchCreateContactsItemExtractedData.from_dict({"amount_due": 1000}),
        )
    ]
    items += [
        Item(contact=n, name=f"Contact {i}") if i % 2 else Item(contact=n) for i, n in enumerate(GOOD_NUMBERS[1:], 1)
    ]
    items.append(Item(contact="+52 55 1234 5600", name="Ana again"))  # the first number, written otherwise
    items.append(Item(contact="12", name="Not a number"))
    label = f"POST /campaigns/{main_id}/contacts (20 good, 1 duplicate, 1 invalid)"
    reply = run.call(
        label,
        post_campaigns_id_contacts,
        201,
        m.CampaignContactBatchResponse,
        id=main_id,
        body=m.CampaignContactBatchCreate(contacts=items),
        idempotency_key=str(uuid.uuid4()),
    )
    contact_ids: list[int] = []
    if isinstance(reply.body, dict):
        contact_ids = [
            int(r["id"]) for r in reply.body.get("results", []) if r.get("status") == "created" and "id" in r
        ]
    if reply.parsed is not None:
        batch = reply.parsed
        summary = batch.summary
        run.expect(
            label,
            (summary.created, summary.updated, summary.skipped_duplicate, summary.failed) == (20, 0, 1, 1),
            f"summary {summary!r}",
        )
        results = batch.results
        run.expect(label, len(results) == 22, f"{len(results)} results")
        if len(results) == 22:
            run.expect(label, [r.index for r in results] == list(range(22)), "results indexes")
            run.expect(label, all(r.status == "created" for r in results[:20]), "first 20 not all created")
            run.expect(label, results[0].contact == GOOD_NUMBERS[0], f"results[0].contact {results[0].contact!r}")
            duplicate, invalid = results[20], results[21]
            run.expect(
                label,
                duplicate.status == "skipped_duplicate" and duplicate.id == results[0].id,
                f"duplicate {duplicate!r}",
            )
            run.expect(
                label, invalid.status == "failed" and invalid.error == "INVALID_PHONE_NUMBER", f"invalid {invalid!r}"
            )
            run.expect(label, absent(invalid.id), f"a failed item carries an id: {invalid.id!r}")
            run.expect(label, absent(results[0].error), f"a created item carries an error: {results[0].error!r}")
    label = f"POST /campaigns/{main_id}/contacts (if_duplicate=update)"
    reply = run.call(
        label,
        post_campaigns_id_contacts,
        201,
        m.CampaignContactBatchResponse,
        id=main_id,
        body=m.CampaignContactBatchCreate(
            contacts=[Item(contact=GOOD_NUMBERS[1], name="Luis", f_id="crm-1")],
            if_duplicate=m.CampaignContactBatchCreateIfDuplicate.UPDATE,
        ),
    )
    if reply.parsed is not None:
        run.expect(label, reply.parsed.summary.updated == 1, f"summary {reply.parsed.summary!r}")
        run.expect(label, reply.parsed.results[0].status == "updated", f"results {reply.parsed.results!r}")
    whatsapp_numbers = [f"+5255987654{i:02d}" for i in range(3)]
    label = f"POST /campaigns/{whatsapp_campaign}/contacts"
    reply = run.call(
        label,
        post_campaigns_id_contacts,
        201,
        m.CampaignContactBatchResponse,
        id=whatsapp_campaign,
        body=m.CampaignContactBatchCreate(
            contacts=[Item(contact=n, name="WhatsApp contact") for n in whatsapp_numbers]
        ),
    )
    if reply.parsed is not None:
        run.expect(label, reply.parsed.summary.created == 3, f"summary {reply.parsed.summary!r}")

    # -- Retrieve a contact, delete another.
    if len(contact_ids) >= 3:
        first = contact_ids[0]
        label = f"GET /campaigns/{main_id}/contacts/{first}"
        reply = run.call(
            label,
            get_campaigns_id_contacts_contact_id,
            200,
            m.CampaignContactDetailResponse,
            id=main_id,
            contact_id=first,
        )
        if reply.parsed is not None:
            contact = reply.parsed.contact
            run.expect(label, reply.parsed.success is True, "success")
            run.expect(label, contact.id == first and contact.contact == GOOD_NUMBERS[0], f"contact {contact!r}")
            run.expect(
                label,
                contact.name == "Ana" and contact.f_id == "crm-0" and contact.status == "queue",
                f"contact {contact!r}",
            )
            run.expect(label, contact.call_count == 0 and contact.has_follow_up is False, f"contact {contact!r}")
            run.expect(
                label,
                contact.extracted_data.to_dict() == {"amount_due": 1000},
                f"extracted_data {contact.extracted_data!r}",
            )
            run.expect(
                label,
                absent(contact.last_call_at),
                f"last_call_at should be left out before any call: {contact.last_call_at!r}",
            )
        plain = contact_ids[2]
        label = f"GET /campaigns/{main_id}/contacts/{plain} (no name, f_id nor context)"
        reply = run.call(
            label,
            get_campaigns_id_contacts_contact_id,
            200,
            m.CampaignContactDetailResponse,
            id=main_id,
            contact_id=plain,
        )
        if reply.parsed is not None:
            contact = reply.parsed.contact
            run.expect(label, contact.contact == GOOD_NUMBERS[2], f"contact {contact!r}")
            run.expect(
                label, absent(contact.name) and absent(contact.f_id) and absent(contact.context), f"contact {contact!r}"
            )
        doomed = contact_ids[-1]
        label = f"DELETE /campaigns/{main_id}/contacts/{doomed}"
        run.call(label, delete_campaigns_id_contacts_contact_id, 204, None, id=main_id, contact_id=doomed)
        label = f"GET /campaigns/{main_id}/contacts/{doomed} (deleted)"
        reply = run.call(
            label, get_campaigns_id_contacts_contact_id, 404, m.CampaignApiError, id=main_id, contact_id=doomed
        )
        if reply.ok:
            run.expect(label, reply.parsed.error == "CONTACT_NOT_FOUND", f"error {reply.parsed.error!r}")
    else:
        run.fail("contacts", "fewer than 3 contacts were created; retrieve and delete not run")
    queued = len(contact_ids) - 1

    # -- List contacts: status filter, paging.
    seen: list[int] | None = []
    for page in range(50):
        label = f"GET /campaigns/{main_id}/contacts?status=queue&pageSize=5&pageIndex={page}"
        reply = run.call(
            label,
            get_campaigns_id_contacts,
            200,
            m.CampaignContactsResponse,
            id=main_id,
            status=m.GetCampaignsIdContactsStatus.QUEUE,
            page_size=5,
            page_index=page,
        )
        if reply.parsed is None:
            seen = None  # reported above; the pages cannot be compared
            break
        listing = reply.parsed
        if page == 0:
            run.expect(label, listing.total_count == queued, f"total_count {listing.total_count!r}, expected {queued}")
        run.expect(label, all(c.status == "queue" for c in listing.contacts), "a contact not in queue")
        run.expect(label, listing.pagination.has_previous == (page > 0), f"pagination {listing.pagination!r}")
        seen += [c.id for c in listing.contacts]
        if not listing.pagination.has_next:
            run.expect(
                label,
                absent(listing.pagination.next_page),
                f"next_page on the last page: {listing.pagination.next_page!r}",
            )
            break
        run.expect(label, listing.pagination.next_page == page + 1, f"next_page {listing.pagination.next_page!r}")
    if seen is not None:
        run.expect(
            "contacts paging",
            sorted(seen) == sorted(contact_ids[:-1]),
            f"pages held {len(seen)} contacts ({len(set(seen))} distinct), expected {queued}",
        )
    label = f"GET /campaigns/{main_id}/contacts?status=answered (none yet)"
    reply = run.call(
        label,
        get_campaigns_id_contacts,
        200,
        m.CampaignContactsResponse,
        id=main_id,
        status=m.GetCampaignsIdContactsStatus.ANSWERED,
    )
    if reply.parsed is not None:
        run.expect(
            label,
            reply.parsed.total_count == 0 and reply.parsed.contacts == [],
            f"total_count {reply.parsed.total_count!r}",
        )

    # -- Lifecycle.
    Action = m.PostCampaignsIdActionAction
    label = f"POST /campaigns/{scheduled_id}/resume (pending: a conflict)"
    reply = run.call(
        label, post_campaigns_id_action, 409, m.CampaignLifecycleConflictError, id=scheduled_id, action=Action.RESUME
    )
    if reply.ok:
        run.expect(label, reply.parsed.error == "INVALID_STATUS_TRANSITION", f"error {reply.parsed.error!r}")
        run.expect(label, reply.parsed.current_status == "pending", f"current_status {reply.parsed.current_status!r}")
    label = f"POST /campaigns/{main_id}/activate"
    reply = run.call(label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=main_id, action=Action.ACTIVATE)
    campaign = check_detail(label, reply, new_name, "active")
    if campaign is not None:
        run.expect(label, not unset(campaign.analytics), "analytics left out after activation")
    label = f"POST /campaigns/{main_id}/activate (already active: a no-op)"
    reply = run.call(label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=main_id, action=Action.ACTIVATE)
    check_detail(label, reply, new_name, "active")
    label = f"POST /campaigns/{main_id}/pause"
    reply = run.call(label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=main_id, action=Action.PAUSE)
    check_detail(label, reply, new_name, "inactive")
    label = f"POST /campaigns/{main_id}/resume"
    reply = run.call(label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=main_id, action=Action.RESUME)
    # Resumed between iterations (every first call already over) it may be active or, at once,
    # in cooldown; never still inactive.
    run.expect(
        label, status_of(reply) in ("active", "cooldown", "finished"), f"status {status_of(reply)!r} after resume"
    )
    check_detail(label, reply, new_name)
    label = f"POST /campaigns/{whatsapp_campaign}/activate"
    reply = run.call(
        label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=whatsapp_campaign, action=Action.ACTIVATE
    )
    check_detail(label, reply, channel="whatsapp")
    # Three messages through a simulator without latency: it may be over by the time it answers.
    run.expect(label, status_of(reply) in ("active", "finished"), f"status {status_of(reply)!r} after activate")
    label = f"POST /campaigns/{seed_phone}/activate (no contacts: stays active)"
    reply = run.call(
        label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=seed_phone, action=Action.ACTIVATE
    )
    check_detail(label, reply, "Q2 Reactivation", "active", "phone_call")
    label = f"POST /campaigns/{seed_whatsapp}/archive"
    reply = run.call(
        label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=seed_whatsapp, action=Action.ARCHIVE
    )
    check_detail(label, reply, "Promo June", "pending")
    run.expect(
        label,
        isinstance(reply.body, dict) and reply.body.get("campaign", {}).get("archived") is True,
        "archived is not true",
    )
    label = f"POST /campaigns/{seed_whatsapp}/archive (already archived: a no-op)"
    reply = run.call(
        label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=seed_whatsapp, action=Action.ARCHIVE
    )
    check_detail(label, reply, "Promo June", "pending")

    # -- List campaigns: filters and cursor paging.
    today = dt.datetime.now(dt.UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    not_archived = ours - {seed_whatsapp}

    def listed(label: str, expect_in: set[int], expect_out: set[int], **filters: Any) -> list[Any]:
        reply = run.call(label, get_campaigns, 200, m.CampaignsResponse, **filters)
        if reply.parsed is None:
            return []
        items = reply.parsed.campaigns
        ids = {c.id for c in items}
        run.expect(label, expect_in <= ids, f"missing campaigns {sorted(expect_in - ids)} (got {sorted(ids)})")
        run.expect(label, not (expect_out & ids), f"unexpected campaigns {sorted(expect_out & ids)}")
        run.expect(
            label, isinstance(reply.parsed.total_count, int) and reply.parsed.total_count >= len(items), "total_count"
        )
        return items

    items = listed("GET /campaigns", not_archived, {seed_whatsapp})
    for item in items:
        if item.id == main_id:
            run.expect(
                "GET /campaigns", item.name == new_name and item.status in ("active", "cooldown"), f"item {item!r}"
            )
            run.expect(
                "GET /campaigns", item.cycle_enabled is True and item.cycle_max_iterations == 2, f"item {item!r}"
            )
            run.expect("GET /campaigns", item.agent.id == agent_id, f"item.agent {item.agent!r}")
    items = listed(
        "GET /campaigns?status=pending",
        {scheduled_id},
        {seed_phone, main_id, whatsapp_campaign},
        status=m.GetCampaignsStatus.PENDING,
    )
    run.expect("GET /campaigns?status=pending", all(c.status == "pending" for c in items), "an item not pending")
    items = listed(
        "GET /campaigns?status=active",
        {seed_phone},
        {scheduled_id},
        status=m.GetCampaignsStatus.ACTIVE,
    )
    run.expect("GET /campaigns?status=active", all(c.status == "active" for c in items), "an item not active")
    listed(
        "GET /campaigns?integration=whatsapp",
        {whatsapp_campaign},
        {seed_phone, main_id, scheduled_id, seed_whatsapp},
        integration=m.GetCampaignsIntegration.WHATSAPP,
    )
    listed(
        "GET /campaigns?integration=phone_call",
        {seed_phone, main_id, scheduled_id},
        {whatsapp_campaign, seed_whatsapp},
        integration=m.GetCampaignsIntegration.PHONE_CALL,
    )
    listed("GET /campaigns?archived=False", not_archived, {seed_whatsapp}, archived=False)
    items = listed("GET /campaigns?archived=True", ours, set(), archived=True)
    for item in items:
        if item.id == seed_whatsapp:
            run.expect("GET /campaigns?archived=True", item.archived is True, f"archived {item.archived!r}")
    listed(f"GET /campaigns?createdAfter={today} (a bare date)", not_archived, set(), created_after=today.isoformat())
    listed(f"GET /campaigns?createdAfter={tomorrow} (a bare date)", set(), ours, created_after=tomorrow.isoformat())
    since = rfc3339(run.started - dt.timedelta(seconds=2))
    listed(f"GET /campaigns?createdAfter={since} (RFC 3339)", not_archived, set(), created_after=since)
    later = rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    listed(f"GET /campaigns?createdAfter={later} (RFC 3339)", set(), ours, created_after=later)
    listed("GET /campaigns?pageSize=1", set(), set(), page_size=1)

    paged: list[int] | None = []
    cursor: str | Unset = UNSET
    for page in range(200):
        label = (
            f"GET /campaigns?createdAfter={today}&pageSize=2"
            + ("" if unset(cursor) else "&cursor=…")
            + f" (page {page + 1})"
        )
        reply = run.call(
            label, get_campaigns, 200, m.CampaignsResponse, created_after=today.isoformat(), page_size=2, cursor=cursor
        )
        if reply.parsed is None:
            paged = None  # reported above; the pages cannot be compared
            break
        listing = reply.parsed
        run.expect(label, len(listing.campaigns) <= 2, f"{len(listing.campaigns)} items on a page of 2")
        run.expect(label, listing.pagination.has_previous == (page > 0), f"pagination {listing.pagination!r}")
        paged += [c.id for c in listing.campaigns]
        if not listing.pagination.has_next:
            run.expect(
                label,
                absent(listing.pagination.next_cursor),
                f"next_cursor on the last page: {listing.pagination.next_cursor!r}",
            )
            break
        if not run.expect(
            label,
            isinstance(listing.pagination.next_cursor, str),
            f"has_next without a next_cursor: {listing.pagination!r}",
        ):
            break
        cursor = listing.pagination.next_cursor
    if paged is not None:
        run.expect("campaign cursor paging", len(paged) == len(set(paged)), f"a campaign listed twice: {paged}")
        run.expect(
            "campaign cursor paging",
            not_archived <= set(paged),
            f"missing {sorted(not_archived - set(paged))} from {paged}",
        )
        run.expect("campaign cursor paging", paged == sorted(paged, reverse=True), f"not newest first: {paged}")

    # -- Calls: wait (bounded) until the engine's calls to the simulator have finished.
    label = f"GET /campaigns/{main_id}/calls (polling until {queued} calls have finished)"
    deadline = time.monotonic() + calls_timeout
    finished = 0
    while True:
        reply = run.call(
            label, get_campaigns_id_calls, 200, m.CampaignCallsResponse, quiet=True, id=main_id, page_size=100
        )
        calls = reply.body.get("calls", []) if isinstance(reply.body, dict) else []
        finished = sum(1 for c in calls if c.get("status") in FINAL_CALL_STATUSES)
        if finished >= queued and finished == len(calls):
            print(
                f"ok   {label}: {finished} finished calls after {calls_timeout - (deadline - time.monotonic()):.1f} s",
                flush=True,
            )
            break
        if time.monotonic() > deadline:
            run.fail(
                label, f"only {finished} of {len(calls)} calls finished after {calls_timeout:.0f} s (expected {queued})"
            )
            break
        time.sleep(0.5)

    label = f"GET /campaigns/{main_id}/calls?pageSize=100"
    reply = run.call(label, get_campaigns_id_calls, 200, m.CampaignCallsResponse, id=main_id, page_size=100)
    all_calls = reply.body.get("calls", []) if isinstance(reply.body, dict) else []
    if reply.parsed is not None:
        listing = reply.parsed
        run.expect(
            label,
            listing.total_count == len(listing.calls),
            f"total_count {listing.total_count} vs {len(listing.calls)} calls",
        )
        run.expect(
            label,
            listing.pagination.page_index == 0 and listing.pagination.page_size == 100,
            f"pagination {listing.pagination!r}",
        )
        for call in listing.calls:
            run.expect(
                label, call.id.startswith("cll_") and call.type_ == "outbound", f"call {call.id!r} type {call.type_!r}"
            )
            run.expect(label, call.contact.phone_number in GOOD_NUMBERS, f"call {call.id}: contact {call.contact!r}")
            run.expect(
                label, isinstance(call.created_at, dt.datetime), f"call {call.id}: created_at {call.created_at!r}"
            )
            if call.status == "ended":
                run.expect(
                    label,
                    call.answered_by in ("human", "machine", "unknown"),
                    f"call {call.id}: answered_by {call.answered_by!r}",
                )
                run.expect(
                    label, call.ended_by in ("agent", "user", "system"), f"call {call.id}: ended_by {call.ended_by!r}"
                )
            else:
                run.expect(
                    label, absent(call.answered_by), f"call {call.id} ({call.status}): answered_by {call.answered_by!r}"
                )
                run.expect(
                    label,
                    call.ended_by == "",
                    f'call {call.id} ({call.status}): ended_by {call.ended_by!r}, expected ""',
                )
    # Both kinds, from the raw body (the simulator answers about half; 20 calls).
    answered = [c for c in all_calls if c.get("status") == "ended"]
    unanswered = [c for c in all_calls if c.get("status") in ("no-answer", "busy", "failed")]
    run.expect(
        label,
        bool(answered) and bool(unanswered),
        f"{len(answered)} answered and {len(unanswered)} unanswered calls; expected both",
    )

    def calls_filtered(label: str, want: int | None, predicate: Any, **filters: Any) -> None:
        reply = run.call(
            label, get_campaigns_id_calls, 200, m.CampaignCallsResponse, id=main_id, page_size=100, **filters
        )
        if reply.parsed is None:
            return
        calls = reply.parsed.calls
        if want is not None:
            run.expect(label, len(calls) == want, f"{len(calls)} calls, expected {want}")
        bad = [c.id for c in calls if not predicate(c)]
        run.expect(label, not bad, f"calls not matching the filter: {bad}")

    by_status = lambda s: sum(1 for c in all_calls if c.get("status") == s)
    calls_filtered(
        "GET /calls?status=ended",
        by_status("ended"),
        lambda c: c.status == "ended",
        status=m.GetCampaignsIdCallsStatus.ENDED,
    )
    calls_filtered(
        "GET /calls?status=no-answer",
        by_status("no-answer"),
        lambda c: c.status == "no-answer",
        status=m.GetCampaignsIdCallsStatus.NO_ANSWER,
    )
    calls_filtered("GET /calls?status=in-progress", 0, lambda c: False, status=m.GetCampaignsIdCallsStatus.IN_PROGRESS)
    humans = sum(1 for c in all_calls if c.get("answered_by") == "human")
    calls_filtered(
        "GET /calls?answeredBy=human",
        humans,
        lambda c: c.answered_by == "human",
        answered_by=m.GetCampaignsIdCallsAnsweredBy.HUMAN,
    )
    machines = sum(1 for c in all_calls if c.get("answered_by") == "machine")
    calls_filtered(
        "GET /calls?answeredBy=machine",
        machines,
        lambda c: c.answered_by == "machine",
        answered_by=m.GetCampaignsIdCallsAnsweredBy.MACHINE,
    )
    calls_filtered(
        f"GET /calls?startDate={today} (a bare date)", len(all_calls), lambda c: True, start_date=today.isoformat()
    )
    calls_filtered(
        f"GET /calls?startDate={tomorrow} (a bare date)", 0, lambda c: False, start_date=tomorrow.isoformat()
    )
    calls_filtered(f"GET /calls?startDate={since} (RFC 3339)", len(all_calls), lambda c: True, start_date=since)
    paged_calls: list[str] | None = []
    for page in range(100):
        label = f"GET /campaigns/{main_id}/calls?pageSize=7&pageIndex={page}"
        reply = run.call(
            label, get_campaigns_id_calls, 200, m.CampaignCallsResponse, id=main_id, page_size=7, page_index=page
        )
        if reply.parsed is None:
            paged_calls = None  # reported above; the pages cannot be compared
            break
        pagination = reply.parsed.pagination
        paged_calls += [c.id for c in reply.parsed.calls]
        run.expect(
            label,
            pagination.page_index == page and pagination.previous_page == (page - 1 if page else None),
            f"{pagination!r}",
        )
        if not pagination.has_next:
            run.expect(label, pagination.next_page is None, f"next_page on the last page: {pagination.next_page!r}")
            break
    if paged_calls is not None:
        run.expect(
            "calls paging",
            sorted(paged_calls) == sorted(c.get("id") for c in all_calls),
            f"pages held {len(paged_calls)} calls, expected {len(all_calls)}",
        )
    label = f"GET /campaigns/{whatsapp_campaign}/calls (a WhatsApp campaign: empty)"
    reply = run.call(label, get_campaigns_id_calls, 200, m.CampaignCallsResponse, id=whatsapp_campaign)
    if reply.parsed is not None:
        run.expect(
            label,
            reply.parsed.total_count == 0 and reply.parsed.calls == [],
            f"total_count {reply.parsed.total_count!r}",
        )

    # -- Contacts after the calls: every status filter, a contact that was called.
    for status in PHONE_STATUSES:
        label = f"GET /campaigns/{main_id}/contacts?status={status}"
        reply = run.call(
            label,
            get_campaigns_id_contacts,
            200,
            m.CampaignContactsResponse,
            id=main_id,
            status=m.GetCampaignsIdContactsStatus(status),
            page_size=100,
        )
        if reply.parsed is not None:
            run.expect(label, all(c.status == status for c in reply.parsed.contacts), "a contact of another status")
    called = next((c for c in all_calls if c.get("status") == "ended"), None) or (all_calls[0] if all_calls else None)
    if called is not None:
        cid = called["contact"]["id"]
        label = f"GET /campaigns/{main_id}/contacts/{cid} (called)"
        reply = run.call(
            label,
            get_campaigns_id_contacts_contact_id,
            200,
            m.CampaignContactDetailResponse,
            id=main_id,
            contact_id=cid,
        )
        if reply.parsed is not None:
            contact = reply.parsed.contact
            run.expect(label, contact.call_count >= 1, f"call_count {contact.call_count!r}")
            run.expect(
                label,
                isinstance(contact.last_call_at, str) and len(contact.last_call_at) == 19,
                f"last_call_at {contact.last_call_at!r}",
            )

    # -- The dispatched campaign now, then archived.
    label = f"GET /campaigns/{main_id} (after the calls)"
    reply = run.call(label, get_campaigns_id, 200, m.CampaignDetailResponse, id=main_id)
    campaign = check_detail(label, reply, new_name)
    if campaign is not None and not unset(campaign.analytics):
        calls = campaign.analytics.additional_properties.get("calls")
        run.expect(label, calls == len(all_calls), f"analytics.calls {calls!r}, expected {len(all_calls)}")
    label = f"POST /campaigns/{main_id}/archive"
    reply = run.call(label, post_campaigns_id_action, 200, m.CampaignDetailResponse, id=main_id, action=Action.ARCHIVE)
    check_detail(label, reply, new_name)
    run.expect(
        label,
        isinstance(reply.body, dict) and reply.body.get("campaign", {}).get("archived") is True,
        "archived is not true",
    )
    listed("GET /campaigns (the archived one left out)", {whatsapp_campaign}, {main_id, seed_whatsapp})

    print()
    if run.failures:
        print(f"{len(run.failures)} failure(s):")
        for failure in run.failures:
            print(f"- {failure.splitlines()[0]}")
    if run.by_field:
        print("\nWhat the responses broke, by field (occurrences, [] for any index):")
        for problem, count in sorted(run.by_field.items()):
            print(f"  {count:4d} × {problem}")
    print(f"Summary: {run.passed} passed, {len(run.failures)} failed", flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
