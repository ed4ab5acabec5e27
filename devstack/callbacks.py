"""Terminal StatusCallbacks as a load generator sends them (chaos.load, bench.receiver)."""

from __future__ import annotations

import hashlib
import json

STATUSES = ("completed", "busy", "no-answer", "failed")


def sid_of(request_id: str) -> str:
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


def callback_body(request_id: str, status: str) -> bytes:
    talk = 42 if status == "completed" else 0
    payload = {
        "CallSid": sid_of(request_id),
        "EventType": "terminal",
        "DateCreated": "2026-11-23 11:23:40",
        "DateUpdated": "2026-11-23 11:24:40",
        "Status": status,
        "StartTime": "2026-11-23 11:23:40",
        "EndTime": "2026-11-23 11:24:40",
        "Direction": "outbound-api",
        "RecordingUrl": None,
        "ConversationDuration": talk,
        "CustomField": request_id,
        "Legs": [
            {"Status": status, "OnCallDuration": talk},
            {"Status": "completed" if talk else None, "OnCallDuration": talk},
        ],
    }
    return json.dumps(payload).encode()
