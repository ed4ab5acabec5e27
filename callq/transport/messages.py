"""Task messages for ``place_call``, framed exactly as kombu's Redis transport stores them.

Scripts push them with the state change they belong to: ``unpark.lua`` as the feed hands
parked calls to the queue (each with the permit reserved for it), ``enqueue.lua`` for a
priority campaign's calls. Going through
``send_task`` for every call costs ~240 µs of Python per message; this costs a few µs. The
frame is built from a template that Celery itself produces (``app.amqp.as_task_v2``), so
every header Celery adds is kept; only the ids and the argument change per call. Tests run
real workers on messages made here.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import redis
from celery import Celery

from callq.dialing.limiter import Slot
from callq.transport.queues import CALLS_QUEUE, PLACE_CALL

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class TaskMessages:
    def __init__(self, app: Celery, task: str = PLACE_CALL, queue: str = CALLS_QUEUE) -> None:
        template = app.amqp.as_task_v2("00000000-0000-0000-0000-000000000000", task, args=("",))
        self._headers: dict[str, Any] = dict(template.headers)
        self._reply_to = template.properties.get("reply_to")
        self._queue = queue
        options = app.conf.broker_transport_options or {}
        self.queue_key = f"{options.get('global_keyprefix', '')}{queue}"

    def encode(self, request_id: str, slot: Slot | None = None) -> str:
        """One message: a JSON string to LPUSH onto :attr:`queue_key`. ``slot``: the permit the
        feed reserved for it (``place_call(request_id, slot=us, account=name)``)."""
        task_id = str(uuid.uuid4())
        headers = dict(self._headers)
        headers["id"] = headers["root_id"] = task_id
        headers["argsrepr"] = repr((request_id,))
        kwargs: dict[str, Any] = {}
        if slot is not None:
            kwargs = {"slot": slot.at_us, "account": slot.account}
            headers["kwargsrepr"] = repr(kwargs)
        body = json.dumps([[request_id], kwargs, _EMBED]).encode()
        return json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": {
                    "correlation_id": task_id,
                    "reply_to": self._reply_to,
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": self._queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )


def slot_of(raw: bytes | str | None) -> Slot | None:
    """The feed's slot a task message carries (as :meth:`TaskMessages.encode` frames it), or
    None: no message, one without a slot (a retry, a requeue, a priority call) or one that
    cannot be read (never an error: the feed's back-pressure reads whatever lies in the
    queue)."""
    if raw is None:
        return None
    try:
        frame = json.loads(raw)
        body = json.loads(base64.b64decode(frame["body"]))
        kwargs = body[1]
        at_us, account = kwargs["slot"], kwargs.get("account", "")
        if isinstance(at_us, bool) or not isinstance(at_us, int) or not isinstance(account, str):
            return None
        return Slot(at_us, account)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def oldest_message(broker: redis.Redis, queue_key: str) -> bytes | str | None:
    """The oldest message waiting in a queue, one command: kombu's Redis transport LPUSHes a
    message and its workers BRPOP, so the oldest is the list's last element (index -1). The
    one read of the broker the feed makes: ``broker`` is the client of the broker's Redis."""
    raw: bytes | str | None = broker.lindex(queue_key, -1)
    return raw
