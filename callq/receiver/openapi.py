"""The receiver's OpenAPI 3.0 document, written by hand (served at ``/openapi.json``)."""

from __future__ import annotations

import copy
from typing import Any

from callq.receiver.parsing import (
    ATTEMPT_PATTERN,
    CHECKED_FIELDS,
    MAX_LEGS,
    RID_PATTERN,
    SID_PATTERN,
    STATUS_PATTERN,
    STRING_FIELDS,
)

CALLBACK_PATH = "/exotel/status-callback"

_NULLABLE_STRING: dict[str, Any] = {"type": "string", "nullable": True}
_NUMBER_OR_STRING: dict[str, Any] = {
    "nullable": True,
    "oneOf": [{"type": "number"}, {"type": "string"}],
}
_BASIC = {
    "CallSid": {
        "type": "string",
        "pattern": SID_PATTERN,
        "description": "Exotel's call Sid.",
    },
    "Status": {
        "type": "string",
        "pattern": STATUS_PATTERN,
        "description": "completed | busy | no-answer | failed (any other value is kept as sent).",
    },
}
# The parser's own lists: the document cannot promise a check the parser does not make
# (PhoneNumberSid was documented as a string but not checked; schemathesis found it).
_TEXT_FIELDS = (*STRING_FIELDS, *CHECKED_FIELDS)


def _json_body() -> dict[str, Any]:
    props: dict[str, Any] = dict(_BASIC)
    for name in _TEXT_FIELDS:
        props[name] = dict(_NULLABLE_STRING)
    props["CustomField"] = {**_NULLABLE_STRING, "description": "Our request id."}
    props["ConversationDuration"] = dict(_NUMBER_OR_STRING)
    props["Legs"] = {
        "type": "array",
        "nullable": True,
        "maxItems": MAX_LEGS,
        "items": {
            "type": "object",
            "properties": {
                "Status": dict(_NULLABLE_STRING),
                "OnCallDuration": dict(_NUMBER_OR_STRING),
            },
        },
    }
    return {"type": "object", "required": ["CallSid", "Status"], "properties": props}


def _form_body() -> dict[str, Any]:
    props: dict[str, Any] = dict(_BASIC)
    for name in (*_TEXT_FIELDS, "CustomField", "ConversationDuration"):
        props[name] = {"type": "string"}
    props["Legs[0][Status]"] = {"type": "string"}
    props["Legs[0][OnCallDuration]"] = {"type": "string"}
    props["Legs[1][Status]"] = {"type": "string"}
    props["Legs[1][OnCallDuration]"] = {"type": "string"}
    return {
        "type": "object",
        "required": ["CallSid", "Status"],
        "properties": props,
        "additionalProperties": {"type": "string"},
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_OK: dict[str, Any] = {
    "type": "object",
    "required": ["ok"],
    "properties": {"ok": {"type": "boolean"}},
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "callq StatusCallback receiver",
        "version": "1.0.0",
        "description": (
            "Receives Exotel's StatusCallbacks and records them in the call ledger. "
            "Idempotent: a repeated callback changes nothing."
        ),
    },
    "paths": {
        CALLBACK_PATH: {
            "post": {
                "operationId": "statusCallback",
                "summary": "One StatusCallback from Exotel.",
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "required": True,
                        "description": "The shared secret (CALLBACK_TOKEN).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "rid",
                        "in": "query",
                        "required": False,
                        "description": (
                            "The request id that placed the call, put in the URL by the "
                            "dialer: a flow call's callback carries no CustomField. "
                            "CustomField, when present, is matched first. An unreadable "
                            "value is ignored (the callback is matched by Sid or kept), "
                            "not refused."
                        ),
                        "schema": {"type": "string", "pattern": RID_PATTERN},
                    },
                    {
                        "name": "attempt",
                        "in": "query",
                        "required": False,
                        "description": (
                            "The attempt number of the request that placed the call: the "
                            "callback of an earlier attempt than one still live is kept "
                            "apart, not taken for that attempt's outcome. Ignored when "
                            "unreadable or without rid."
                        ),
                        "schema": {"type": "string", "pattern": ATTEMPT_PATTERN},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _json_body()},
                        "multipart/form-data": {"schema": _form_body()},
                        "application/x-www-form-urlencoded": {"schema": _form_body()},
                    },
                },
                "responses": {
                    "200": {
                        "description": "Recorded: matched to a call, a duplicate, or kept "
                        "until its Sid is known.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["result"],
                                    "properties": {
                                        "result": {
                                            "type": "string",
                                            "enum": ["matched", "duplicate", "pending"],
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "400": _error("The body cannot be read (malformed JSON or form)."),
                    "401": _error("The token is missing or wrong."),
                    "413": _error("The body is larger than the limit."),
                    "415": _error("The content type is not one of the three accepted."),
                    "422": _error("The body reads but is not a callback (CallSid missing...)."),
                    "503": _error("The ledger (Redis) cannot be reached; retry later."),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Ready: Redis answers.",
                "responses": {
                    "200": {
                        "description": "Redis answers.",
                        "content": {"application/json": {"schema": _OK}},
                    },
                    "503": {
                        "description": "Redis does not answer.",
                        "content": {"application/json": {"schema": _OK}},
                    },
                },
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "summary": "Alive: the process serves requests.",
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": {"application/json": {"schema": _OK}},
                    }
                },
            }
        },
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the document."""
    return copy.deepcopy(_DOCUMENT)
