"""The API's OpenAPI 3.0 document, written by hand (served at ``/openapi.json``)."""

from __future__ import annotations

import copy
from typing import Any

from callq.campaign.controls import MAX_WEIGHT, MIN_WEIGHT, REDIAL_STATUSES
from callq.intake.enqueue import DEDUPE_CHOICES

CAMPAIGN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
WINDOW_PATTERN = r"^(always|[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2})$"
#: The largest page of ``GET /v1/campaigns`` (kept equal to callq.api.app.MAX_PAGE).
MAX_PAGE = 500

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "nullable": True, "description": "The field at fault."},
    },
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_HELD: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": "Why the waiting calls are held back, and until when; null when not.",
    "properties": {
        "reason": {
            "type": "string",
            "enum": ["paused", "send_at", "window", "breaker", "unknown_account"],
        },
        "until": {"type": "string", "nullable": True},
        "count": {"type": "integer"},
        "detail": {"type": "string"},
        "expires": {"type": "boolean"},
        "message": {"type": "string"},
    },
}
_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["campaign", "total", "states", "call_status", "held"],
    "properties": {
        "campaign": {"type": "string"},
        "total": {"type": "integer"},
        "states": _COUNTS,
        "call_status": _COUNTS,
        "held": _HELD,
        "parked": {"type": "integer"},
        "redials": {"type": "integer"},
        "controls": {"type": "object"},
        "live_calls": {
            "type": "object",
            "description": "The campaign's account's live-call slots in use against its cap "
            "(EXOTEL_MAX_LIVE_CALLS); absent when the account has no cap.",
            "properties": {
                "account": {"type": "string"},
                "used": {"type": "integer"},
                "cap": {"type": "integer"},
            },
        },
    },
}
_CONTROLS_DOC = {
    "account": "The Exotel account: a name in EXOTEL_ACCOUNTS, or `default`.",
    "window": "Daily calling window HH:MM-HH:MM, or `always`.",
    "timezone": "Time zone of the window, e.g. Asia/Kolkata.",
    "window_zone": "Judge the window in the campaign's timezone (campaign) or in each callee's "
    "own zone (callee; the campaign's where a number maps to several zones or none).",
    "send_at": "Dial nothing before (ISO 8601 with an offset, 2026-11-24T10:00+05:30).",
    "end_at": "Calls not dialled by then end `expired` (ISO 8601 with an offset).",
    "redial_on": "Redial when a call ends with one of busy, no-answer, failed (comma-separated).",
    "redials": "Redials per call, 0-10.",
    "redial_interval": "Seconds before the first redial.",
    "redial_backoff": "linear or exponential.",
    "weight": f"Share of the account's permits, {MIN_WEIGHT:g} to {MAX_WEIGHT:g}.",
    "number_cap": "At most N placed calls to one number per rolling period, over every "
    "campaign and account: N/PERIOD, e.g. 2/1d or 1/6h (`none`: NUMBER_DAILY_CAP). A call "
    "over it waits, or ends `skipped` when it may not be called again before end_at.",
}


def _control_schema(name: str, *, typed: bool) -> dict[str, Any]:
    """A control's schema: as text (query, form) or as JSON (``typed``)."""
    doc = _CONTROLS_DOC[name]
    if name in ("redials",):
        out: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 10}
        return {**out, "description": doc} if typed else {"type": "string", "description": doc}
    if name == "redial_on" and typed:
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(REDIAL_STATUSES)},
            "minItems": 1,
            "description": doc,
        }
    if name == "weight" and typed:
        return {"type": "number", "minimum": MIN_WEIGHT, "maximum": MAX_WEIGHT, "description": doc}
    if name == "redial_interval" and typed:
        return {"type": "number", "exclusiveMinimum": True, "minimum": 0, "description": doc}
    if name == "account":
        return {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{0,64}$", "description": doc}
    if name == "window":
        return {"type": "string", "pattern": WINDOW_PATTERN, "description": doc}
    if name == "redial_backoff":
        return {"type": "string", "enum": ["linear", "exponential"], "description": doc}
    if name == "window_zone":
        return {"type": "string", "enum": ["campaign", "callee"], "description": doc}
    return {"type": "string", "description": doc}


_FLAGS_DOC = {
    "priority": "The priority lane: dialled before any campaign, at the next free permit.",
    "strict": "Reject the whole file on any bad row (nothing is enqueued).",
    "dedupe": "The same parties twice: keep the first row, the last, or dial all.",
}


def _flag_schema(name: str, *, typed: bool) -> dict[str, Any]:
    if name == "dedupe":
        return {"type": "string", "enum": list(DEDUPE_CHOICES), "description": _FLAGS_DOC[name]}
    if typed:
        return {"type": "boolean", "description": _FLAGS_DOC[name]}
    return {"type": "string", "enum": ["true", "false"], "description": _FLAGS_DOC[name]}


def _enqueue_fields(*, typed: bool) -> dict[str, Any]:
    return {
        **{n: _flag_schema(n, typed=typed) for n in _FLAGS_DOC},
        **{n: _control_schema(n, typed=typed) for n in _CONTROLS_DOC},
    }


_CELL: dict[str, Any] = {
    "nullable": True,
    "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
}
_ROW: dict[str, Any] = {
    "type": "object",
    "description": "One call, keyed by Exotel's parameter names (From, To or Url, CallerId, "
    "CustomField, TimeLimit, TimeOut, ...) as in a CSV header.",
    "additionalProperties": _CELL,
    "example": {"From": "+918030752499", "To": "09876500001", "CustomField": "order-1"},
}
_ROWS: dict[str, Any] = {"type": "array", "items": _ROW}
_ENQUEUED: dict[str, Any] = {
    "type": "object",
    "required": ["campaign", "accepted", "existing", "rejected", "duplicates", "errors"],
    "properties": {
        "campaign": {"type": "string"},
        "accepted": {"type": "integer", "description": "New calls."},
        "existing": {"type": "integer", "description": "Already in the campaign: not added."},
        "republished": {"type": "integer"},
        "refused": {"type": "integer", "description": "Refused: the campaign is cancelled."},
        "rejected": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "string"}},
        "duplicate_rows": {"type": "array", "items": {"type": "string"}},
        "issues": {"type": "array", "items": {"type": "string"}},
        "rejected_rows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "held": _HELD,
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "The body cannot be read (malformed JSON or multipart).",
        401: "The bearer token is missing or wrong.",
        404: "No such campaign.",
        409: "The campaign is cancelled: its calls are refused.",
        413: "The body is larger than API_MAX_BODY_BYTES.",
        415: "The content type is not one this call takes.",
        422: "Bad input; `field` names it.",
        503: "The ledger (Redis) cannot be reached; retry later.",
    }
    return {str(c): _json(_ERROR, what[c]) for c in (401, 422, 503, *codes)}


_ID: dict[str, Any] = {
    "name": "campaign",
    "in": "path",
    "required": True,
    "description": "The campaign id.",
    "schema": {"type": "string", "pattern": CAMPAIGN_PATTERN},
}
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]


def _action(op: str, summary: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": op,
            "summary": summary,
            "parameters": [_ID],
            "security": _SECURITY,
            "responses": {"200": _json(answer, "Done."), **_errors(404)},
        }
    }


_OK = {"type": "object", "properties": {"ok": {"type": "boolean"}, "error": {"type": "string"}}}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "callq API",
        "version": "1",
        "description": "Campaigns of the outbound call queue: enqueue calls, read the status "
        "and the report, pause, resume, cancel, change the controls. Every /v1 call needs "
        "`Authorization: Bearer <API_TOKEN>`.",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/campaigns": {
            "get": {
                "operationId": "listCampaigns",
                "summary": "The campaigns by id, a page at a time (follow `next`).",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "description": "The `next` of the page before.",
                        "schema": {"type": "string", "pattern": CAMPAIGN_PATTERN},
                    },
                    {
                        "name": "prefix",
                        "in": "query",
                        "description": "Only ids starting with it.",
                        "schema": {"type": "string", "pattern": CAMPAIGN_PATTERN},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["campaigns", "next"],
                            "properties": {
                                "campaigns": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["campaign", "total", "states"],
                                        "properties": {
                                            "campaign": {"type": "string"},
                                            "total": {"type": "integer"},
                                            "states": _COUNTS,
                                            "call_status": _COUNTS,
                                        },
                                    },
                                },
                                "next": {"type": "string", "nullable": True},
                            },
                        },
                        "One page.",
                    ),
                    **_errors(),
                },
            }
        },
        "/v1/campaigns/{campaign}": {
            "get": {
                "operationId": "getCampaign",
                "summary": "The status: `python -m producer status --json`.",
                "security": _SECURITY,
                "parameters": [
                    _ID,
                    {
                        "name": "details",
                        "in": "query",
                        "description": "Add parked, redials and controls (`--details`).",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {"200": _json(_STATUS, "The status."), **_errors(404)},
            },
            "patch": {
                "operationId": "setCampaign",
                "summary": "Change the controls (`python -m producer set`); answers them.",
                "security": _SECURITY,
                "parameters": [_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    n: _control_schema(n, typed=True) for n in _CONTROLS_DOC
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"type": "object"}, "The controls now."),
                    **_errors(400, 404, 413, 415),
                },
            },
        },
        "/v1/campaigns/{campaign}/calls": {
            "post": {
                "operationId": "enqueueCalls",
                "summary": "Enqueue calls: a CSV, or JSON rows (`python -m producer enqueue`).",
                "description": "Re-posting the same rows adds nothing (`existing`). A CSV comes "
                "as a text/csv body or the `file` part of a multipart upload, the controls as "
                "query parameters (or form fields); JSON rows come as an array, or as an "
                "object with `rows` and the controls.",
                "security": _SECURITY,
                "parameters": [
                    _ID,
                    *[
                        {"name": n, "in": "query", "schema": s}
                        for n, s in _enqueue_fields(typed=False).items()
                    ],
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    **_enqueue_fields(typed=False),
                                },
                            }
                        },
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ROWS,
                                    {
                                        "type": "object",
                                        "required": ["rows"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "rows": _ROWS,
                                            **_enqueue_fields(typed=True),
                                        },
                                    },
                                ]
                            }
                        },
                    },
                },
                "responses": {
                    "200": _json(_ENQUEUED, "The counts, each rejected row with its reason."),
                    **_errors(400, 409, 413, 415),
                },
            }
        },
        "/v1/campaigns/{campaign}/report": {
            "get": {
                "operationId": "campaignReport",
                "summary": "One row per call (or per attempt), streamed: "
                "`python -m producer report`.",
                "security": _SECURITY,
                "parameters": [
                    _ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["csv", "jsonl"]},
                    },
                    {
                        "name": "attempts",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The report.",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(404),
                },
            }
        },
        "/v1/campaigns/{campaign}/pause": _action(
            "pauseCampaign",
            "Stop dialling: nothing more passes the sent mark.",
            {"type": "object", "properties": {"campaign": {}, "paused": {"type": "boolean"}}},
        ),
        "/v1/campaigns/{campaign}/resume": _action(
            "resumeCampaign",
            "Dial again; `parked` calls go back to the feed.",
            {"type": "object", "properties": {"paused": {}, "parked": {"type": "integer"}}},
        ),
        "/v1/campaigns/{campaign}/cancel": _action(
            "cancelCampaign",
            "Cancel every call not yet dialled.",
            {"type": "object", "properties": {"cancelled": {"type": "integer"}}},
        ),
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Ready: Redis answers.",
                "responses": {
                    "200": _json(_OK, "Redis answers."),
                    "503": _json(_OK, "Redis does not answer."),
                },
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "summary": "Alive: the process serves requests.",
                "responses": {"200": _json(_OK, "Alive.")},
            }
        },
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the document."""
    return copy.deepcopy(_DOCUMENT)
