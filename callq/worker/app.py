"""The worker's Celery app, configured lazily from the settings when first used.

Only worker processes import it: it patches kombu's Redis transport (see
``_survive_closed_channels``). Queue names are in :mod:`callq.transport.queues`, the
configuration in :mod:`callq.transport.config`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from callq.settings import load_settings
from callq.transport.config import celery_config

__all__ = ["app"]


def _survive_closed_channels() -> None:
    """Work around a kombu Redis-transport crash (celery/kombu#582, still in kombu 5.x).

    When Redis goes away, the consumer closes its channel; an ack or reject still pending for
    a message of that channel then calls ``Channel._connparams``, which dereferences the closed
    connection's ``client`` (None) and raises AttributeError. Celery catches only connection
    errors there, so the worker process exits (seen in our Redis-outage test and chaos runs).
    Raising the transport's ConnectionError instead lets Celery log "Couldn't ack/reject" and
    go on: the message stays in kombu's unacked hash and is restored after visibility_timeout,
    and the ledger's claim and fences make any second copy harmless.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    original: Callable[..., Any] = kombu_redis.Channel._connparams
    if getattr(original, "_callq_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the channel's connection is closed")
        return original(self, asynchronous=asynchronous)

    _connparams._callq_patched = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010


_survive_closed_channels()


app = Celery("callq", include=["callq.worker.tasks"])


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(load_settings()))
