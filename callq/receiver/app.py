"""The StatusCallback receiver: a small Starlette app.

``POST /exotel/status-callback?token=...&rid=...&attempt=...`` checks the token in constant
time (the dialer's ``rid`` and ``attempt`` name the request that placed the call: a flow
call's callback has no CustomField), reads at most
``max_body_bytes`` (64 KiB by default), parses JSON, multipart/form-data or urlencoded bodies,
and records the callback in the ledger (:class:`~callq.store.callbacks.CallbackStore`).

Answers: 200 ``{"result": "matched" | "duplicate" | "pending"}``; 401 bad token; 413 too
large; 415 unknown content type; 400 unreadable body; 422 not a callback; 503 Redis down (Exotel
retries). Bad input is never a 5xx. ``GET /healthz`` (Redis answers) and ``GET /livez``.

``app = create_app()`` reads no environment at import: without settings, they are loaded when
the app starts (its lifespan), and a missing ``CALLBACK_TOKEN`` or ``REDIS_URL`` stops the start.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callq.exotel.params import CALLBACK_ATTEMPT_PARAM, CALLBACK_RID_PARAM
from callq.metrics import CALLBACKS
from callq.receiver.openapi import CALLBACK_PATH, document
from callq.receiver.parsing import (
    CONTENT_TYPES,
    BadCallback,
    media_type,
    parse_callback,
    url_reference,
)
from callq.settings import ConfigError, Settings, load_settings
from callq.store.callbacks import Applied, CallbackEvent, CallbackStore
from callq.store.connect import redis_for
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.layout import check_layout
from callq.store.slots import live_caps

__all__ = ["CALLBACK_PATH", "DEFAULT_MAX_BODY_BYTES", "app", "check_settings", "create_app"]

log = logging.getLogger("callbacks")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)


def check_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the receiver cannot run with ``settings``."""
    if not settings.callback_token.get_secret_value():
        raise ConfigError(
            "CALLBACK_TOKEN is not set: the receiver refuses to accept unauthenticated callbacks"
        )
    settings.require_redis_url()


def mask_number(number: str | None) -> str:
    """All but the last 4 digits hidden: ``+919876543210`` -> ``****3210``."""
    if not number:
        return "-"
    digits = re.sub(r"\D", "", number)
    return "****" + digits[-4:] if len(digits) > 4 else "****"


class _RedactToken(logging.Filter):
    """Hides ``token=...`` in access-log lines (uvicorn logs the path with its query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_TEXT.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = _TOKEN_IN_TEXT.sub(r"\1***", record.msg)
        return True


def redact_access_logs() -> None:
    """Install the token filter on the access loggers of uvicorn and gunicorn (once)."""
    for name in ("uvicorn.access", "gunicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) for f in logger.filters):
            logger.addFilter(_RedactToken())


@dataclass
class _Runtime:
    settings: Settings
    client: redis.Redis
    store: CallbackStore
    token: bytes

    @classmethod
    def build(cls, settings: Settings) -> _Runtime:
        check_settings(settings)
        client = redis_for(settings)
        check_layout(client, Keys.for_settings(settings), settings)
        return cls(
            settings=settings,
            client=client,
            store=CallbackStore(
                client,
                Keys.for_settings(settings),
                events=EventFlags.for_settings(settings),
                capped=live_caps(settings),
                known=settings.account_names(),
            ),
            token=settings.callback_token.get_secret_value().encode("utf-8"),
        )


class _BodyTooLarge(Exception):
    pass


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (before buffering) anything beyond ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadCallback(400, "bad Content-Length") from None
        if size < 0:
            raise BadCallback(400, "bad Content-Length")
        if size > limit:
            raise _BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise _BodyTooLarge
        body += chunk
    return bytes(body)


async def _healthz(rt: _Runtime | None) -> Response:
    if rt is None:
        return JSONResponse({"ok": False, "error": "not started"}, status_code=503)
    try:
        await run_in_threadpool(rt.client.ping)
    except redis.RedisError:
        return JSONResponse({"ok": False, "error": "redis unavailable"}, status_code=503)
    return JSONResponse({"ok": True})


async def _http_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, str(exc.detail), headers=exc.headers)
    return _error(500, "internal error")  # pragma: no cover


async def _server_error(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _error(500, "internal error")


async def _status_callback(rt: _Runtime, request: Request, max_body_bytes: int) -> Response:
    """One StatusCallback: the token, the content type, the body, then the ledger."""
    token = request.query_params.get("token")
    if token is None or not hmac.compare_digest(token.encode("utf-8", "replace"), rt.token):
        return _error(401, "missing or wrong token")
    content_type = request.headers.get("content-type", "")
    if media_type(content_type) not in CONTENT_TYPES:
        return _error(415, f"use one of: {', '.join(CONTENT_TYPES)}")
    event = await _read_event(request, content_type, max_body_bytes)
    if isinstance(event, Response):
        return event
    event = _with_url_reference(event, request)
    try:
        applied = await run_in_threadpool(rt.store.apply_event, event)
    except redis.RedisError as exc:
        log.error("callback sid=%s not recorded: Redis: %s", event.sid, exc)
        return _error(503, "ledger unavailable, retry later")
    _log_callback(event, applied)
    CALLBACKS.labels(event.status, applied.result).inc()
    return JSONResponse({"result": applied.result})


async def _read_event(
    request: Request, content_type: str, max_body_bytes: int
) -> CallbackEvent | Response:
    """The parsed callback, or the 4xx that says why it is refused (never a 500)."""
    try:
        body = await _read_body(request, max_body_bytes)
        return await parse_callback(content_type, body)
    except _BodyTooLarge:
        return _error(
            413, f"body larger than {max_body_bytes} bytes", headers={"Connection": "close"}
        )
    except BadCallback as exc:
        return _error(exc.status, exc.message)
    except ClientDisconnect:
        return _error(400, "client disconnected")
    except Exception:  # bad input must never become a 500
        log.warning("unreadable callback body", exc_info=True)
        return _error(400, "unreadable body")


def _with_url_reference(event: CallbackEvent, request: Request) -> CallbackEvent:
    """``event`` with the request id and attempt the URL's query names (the dialer's)."""
    query = request.query_params
    rid, attempt, problem = url_reference(
        query.getlist(CALLBACK_RID_PARAM), query.getlist(CALLBACK_ATTEMPT_PARAM)
    )
    if problem is not None:
        log.warning("callback sid=%s: the URL's %s; matched without it", event.sid, problem)
    if rid is None:
        return event
    return dataclasses.replace(event, rid=rid, attempt=attempt)


def create_app(
    settings: Settings | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """The receiver. With ``settings``, they are checked now (:class:`ConfigError`);
    without, they are loaded from the environment when the app starts."""
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be at least 1")
    holder: list[_Runtime] = [_Runtime.build(settings)] if settings is not None else []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        redact_access_logs()
        if not holder:
            holder.append(_Runtime.build(load_settings()))
        try:
            yield
        finally:
            for rt in holder:
                rt.client.close()

    def runtime() -> _Runtime | None:
        return holder[0] if holder else None

    async def status_callback(request: Request) -> Response:
        rt = runtime()
        if rt is None:
            return _error(503, "not started")
        return await _status_callback(rt, request, max_body_bytes)

    async def healthz(_: Request) -> Response:
        return await _healthz(runtime())

    async def livez(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def openapi(_: Request) -> Response:
        return JSONResponse(document())

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route(CALLBACK_PATH, status_callback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


def _log_callback(event: CallbackEvent, applied: Applied) -> None:
    log.info(
        "callback sid=%s request_id=%s status=%s result=%s by=%s to=%s from=%s",
        event.sid,
        applied.request_id or "-",
        event.status,
        applied.result,
        applied.matched_by or "-",
        mask_number(event.fields.get("To")),
        mask_number(event.fields.get("From")),
    )


#: For ``uvicorn callbacks.app:app``; settings are loaded at start-up, not at import.
app = create_app()
