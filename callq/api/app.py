"""The HTTP API for campaign schedulers: a small Starlette app.

Every ``/v1`` call needs ``Authorization: Bearer <token>``, one of ``API_TOKEN``'s
comma-separated tokens, compared in constant time; without ``API_TOKEN`` the API does not
start. The calls are those of ``python -m producer``, on the same code (callq.intake):

- ``POST /v1/campaigns/{id}/calls``: a CSV (``text/csv`` body or the ``file`` part of a
  multipart upload) or JSON rows, with the campaign controls as query parameters, form fields
  or JSON fields; the answer is ``enqueue --json``'s, plus ``held``. Re-posting adds nothing.
- ``GET /v1/campaigns/{id}``: ``status --json`` (``?details=true``: ``--details``).
- ``GET /v1/campaigns/{id}/report?format=csv|jsonl&attempts=false``: streamed.
- ``POST /v1/campaigns/{id}/pause|resume|cancel``, ``PATCH /v1/campaigns/{id}`` (``set``).
- ``GET /v1/campaigns?limit=&after=&prefix=``: the campaigns by id, paged.

Unauthenticated: ``GET /openapi.json``, ``/healthz`` (Redis answers), ``/livez``.

The live campaign page (``GET /``, ``/campaigns/{id}``; callq.api.page) is served by the
same app, behind the same tokens: a token login gives the browser a signed session cookie.

Answers are JSON; an error is ``{"error": ..., "field": ...}``: 401 no or wrong token, 404 no
such campaign, 409 the campaign is cancelled, 413 body over ``API_MAX_BODY_BYTES``, 415 an
unknown content type, 400 a body that cannot be read, 422 bad input (naming the field), 503
Redis down. Bad input is never a 5xx.

``app = create_app()`` reads no environment at import: the settings are loaded when the app
starts (its lifespan), and a missing ``API_TOKEN`` or ``REDIS_URL`` stops the start.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

import redis
from kombu.exceptions import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from callq.api.body import (
    CONTROLS,
    CSV_TYPES,
    ENQUEUE_FLAGS,
    JSON_TYPES,
    MULTIPART,
    BadRequest,
    BodyTooLarge,
    Controls,
    load_json,
    media_type,
    parse_controls,
    parse_flag,
    read_bytes,
    read_multipart,
    rows_from_json,
    spool,
)
from callq.api.openapi import MAX_PAGE, document
from callq.api.page import Page
from callq.errors import Unreplicated
from callq.ids import CAMPAIGN_RE
from callq.intake import campaign_status
from callq.intake.csvread import read_cells
from callq.intake.enqueue import Enqueuer, EnqueueResult
from callq.intake.report import REPORT_FORMATS, report_lines
from callq.settings import ConfigError, Settings, load_settings
from callq.store.ledger import CampaignStatus, Ledger

__all__ = ["MAX_PAGE", "ConfigError", "app", "authorized", "check_settings", "create_app"]

log = logging.getLogger("callq.api")

DEFAULT_PAGE = 50
#: Report bytes gathered into one chunk of the streamed answer.
REPORT_CHUNK = 64 * 1024


def check_settings(settings: Settings) -> list[bytes]:
    """The API's tokens; :class:`ConfigError` when the API cannot run with ``settings``."""
    tokens = settings.api_tokens()
    settings.require_redis_url()
    return tokens


@dataclass
class _Runtime:
    settings: Settings
    enqueuer: Enqueuer
    tokens: list[bytes]

    @property
    def ledger(self) -> Ledger:
        return self.enqueuer.ledger

    @classmethod
    def build(cls, settings: Settings) -> _Runtime:
        tokens = check_settings(settings)
        return cls(settings=settings, enqueuer=Enqueuer(settings), tokens=tokens)

    def close(self) -> None:
        self.ledger.redis.close()


def _error(
    status: int,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "field": field, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def authorized(header: str | None, tokens: list[bytes]) -> bool:
    """``Bearer <token>`` with one of ``tokens``: every token is compared, each in constant
    time, so neither the match nor which token matched shows in the timing."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = value.strip().encode("utf-8", "replace")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token)
    return found


def _campaign(request: Request) -> str:
    campaign = str(request.path_params["campaign"])
    if not CAMPAIGN_RE.fullmatch(campaign):
        raise BadRequest(
            422,
            "id: use 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit)",
            "id",
        )
    return campaign


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each at most once, every name one of ``allowed``."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            shown = key if key.isprintable() and len(key) <= 64 else ascii(key[:64])
            raise BadRequest(422, f"{shown}: not a parameter (use {', '.join(allowed)})", shown)
        if key in out:
            raise BadRequest(422, f"{key}: given twice", key)
        out[key] = value
    return out


class _Api:
    """The handlers, on one runtime (settings, the Enqueuer and its ledger, the tokens)."""

    def __init__(self, runtime: Callable[[], _Runtime | None]) -> None:
        self.runtime = runtime

    # --- plumbing ------------------------------------------------------------------------

    def guarded(
        self, handler: Callable[[_Runtime, Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the token; bad input and Redis errors become their 4xx/503."""

        async def endpoint(request: Request) -> Response:
            rt = self.runtime()
            if rt is None:
                return _error(503, "not started")
            if not authorized(request.headers.get("authorization"), rt.tokens):
                return _error(
                    401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            try:
                return await handler(rt, request)
            except BadRequest as exc:
                return _error(exc.status, exc.message, exc.field)
            except BodyTooLarge:
                return _error(
                    413,
                    f"body larger than {rt.settings.api_max_body_bytes} bytes (API_MAX_BODY_BYTES)",
                    headers={"Connection": "close"},
                )
            except Unreplicated as exc:
                log.error("%s %s: %s", request.method, request.url.path, exc)
                return _error(503, f"{exc}; retry later")
            except (redis.RedisError, OperationalError) as exc:
                log.error("%s %s: Redis: %s", request.method, request.url.path, type(exc).__name__)
                return _error(503, "ledger unavailable, retry later")

        return endpoint

    @staticmethod
    async def _status(rt: _Runtime, campaign: str) -> CampaignStatus:
        """The campaign's status, or 404 when it has no call."""
        status = await run_in_threadpool(
            campaign_status, campaign, settings=rt.settings, ledger=rt.ledger
        )
        if status.total == 0:
            raise BadRequest(404, f"no campaign {campaign!r}", "id")
        return status

    # --- enqueue -------------------------------------------------------------------------

    async def post_calls(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        allowed = (*ENQUEUE_FLAGS, *CONTROLS)
        query = _query(request, allowed)
        kind = media_type(request.headers.get("content-type"))
        limit = rt.settings.api_max_body_bytes
        if kind in CSV_TYPES:
            controls = parse_controls(query, rt.settings, allowed=allowed)
            stream = await spool(request, limit)
            return await self._enqueue_file(rt, campaign, stream, controls)
        if kind == MULTIPART:
            upload, fields = await read_multipart(request, limit)
            try:
                twice = sorted(set(fields) & set(query))
                if twice:
                    raise BadRequest(422, f"{twice[0]}: given twice", twice[0])
                controls = parse_controls({**query, **fields}, rt.settings, allowed=allowed)
                if upload is None:
                    raise BadRequest(422, "file: the multipart upload has no file part", "file")
                return await self._enqueue_file(rt, campaign, upload.file, controls)
            finally:
                if upload is not None:
                    await upload.close()
        if kind in JSON_TYPES:
            data = load_json(await read_bytes(request, limit))
            if isinstance(data, dict):
                if "rows" not in data:
                    raise BadRequest(422, "rows: missing (an array of objects)", "rows")
                fields = {k: v for k, v in data.items() if k != "rows"}
                twice = sorted(set(fields) & set(query))
                if twice:
                    raise BadRequest(422, f"{twice[0]}: given twice", twice[0])
                values: dict[str, Any] = {**query, **fields}
                header, cells = rows_from_json(data["rows"])
            else:
                values = dict(query)
                header, cells = rows_from_json(data)
            controls = parse_controls(values, rt.settings, allowed=allowed)
            caller = rt.settings.exotel_caller_id or None

            def run() -> EnqueueResult:
                return rt.enqueuer.enqueue_items(
                    read_cells(header, cells, default_caller_id=caller),
                    campaign,
                    strict=controls.strict,
                    options=controls.options,
                    dedupe=controls.dedupe,
                )

            return await self._answer(rt, campaign, await run_in_threadpool(run), controls)
        raise BadRequest(
            415, f"use one of: {', '.join((*CSV_TYPES, MULTIPART, 'application/json'))}"
        )

    async def _enqueue_file(
        self, rt: _Runtime, campaign: str, stream: IO[bytes], controls: Controls
    ) -> Response:
        def run() -> EnqueueResult:
            try:
                return rt.enqueuer.enqueue_file(
                    stream,
                    campaign,
                    strict=controls.strict,
                    options=controls.options,
                    dedupe=controls.dedupe,
                )
            finally:
                stream.close()

        return await self._answer(rt, campaign, await run_in_threadpool(run), controls)

    async def _answer(
        self, rt: _Runtime, campaign: str, result: EnqueueResult, controls: Controls
    ) -> Response:
        """``enqueue --json``'s answer, each rejected row also as an object, and ``held``.
        200 when calls are in the campaign (new or already there); 409 when the campaign
        is cancelled and nothing was taken; 422 when nothing was enqueued (an unusable
        file, no good row, or ``strict`` and a bad row), as the CLI's exit code 1."""
        body = result.as_dict()
        body["rejected_rows"] = [
            {"line": e.line, "field": e.field, "message": e.message} for e in result.rejected
        ]
        body["held"] = None
        log.info(
            "enqueue campaign=%s accepted=%d existing=%d rejected=%d duplicates=%d refused=%d",
            campaign,
            result.accepted,
            result.existing,
            len(result.rejected),
            len(result.duplicates),
            result.refused,
        )
        if controls.strict and result.rejected:
            return _error(
                422,
                "strict: a row was rejected, nothing was enqueued",
                "rows",
                **body,
            )
        if result.accepted == 0 and result.existing == 0:
            if result.refused:
                return _error(409, f"campaign {campaign} is cancelled", "id", **body)
            why = "; ".join([*body["issues"], *body["errors"][:3]]) or "no rows"
            return _error(422, f"nothing was enqueued: {why}", "rows", **body)
        status = await run_in_threadpool(
            campaign_status, campaign, settings=rt.settings, ledger=rt.ledger
        )
        if status.held is not None:
            body["held"] = status.held.as_dict() | {"message": status.held.message(time.time())}
        return JSONResponse(body)

    # --- one campaign --------------------------------------------------------------------

    async def get_campaign(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        query = _query(request, ("details",))
        details = parse_flag(query["details"], "details") if "details" in query else False
        status = await self._status(rt, campaign)
        return JSONResponse(status.as_dict(details=details))

    async def patch_campaign(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        _query(request, ())
        if media_type(request.headers.get("content-type")) not in JSON_TYPES:
            raise BadRequest(415, "use application/json")
        data = load_json(await read_bytes(request, rt.settings.api_max_body_bytes))
        if not isinstance(data, dict):
            raise BadRequest(422, "the body must be a JSON object of controls")
        controls = parse_controls(data, rt.settings, allowed=CONTROLS)
        await self._status(rt, campaign)
        await run_in_threadpool(rt.enqueuer.set_options, campaign, controls.options)
        log.info("set campaign=%s %s", campaign, ",".join(sorted(data)) or "-")
        status = await self._status(rt, campaign)
        return JSONResponse(status.controls)

    async def pause(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        _query(request, ())
        await self._status(rt, campaign)
        await run_in_threadpool(rt.ledger.pause, campaign)
        log.info("pause campaign=%s", campaign)
        return JSONResponse({"campaign": campaign, "paused": True})

    async def resume(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        _query(request, ())
        await self._status(rt, campaign)
        parked = await run_in_threadpool(rt.ledger.resume, campaign)
        log.info("resume campaign=%s parked=%d", campaign, parked)
        return JSONResponse({"campaign": campaign, "paused": False, "parked": parked})

    async def cancel(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        _query(request, ())
        await self._status(rt, campaign)
        cancelled = await run_in_threadpool(rt.ledger.cancel, campaign)
        log.info("cancel campaign=%s cancelled=%d", campaign, cancelled)
        return JSONResponse({"campaign": campaign, "cancelled": cancelled})

    async def report(self, rt: _Runtime, request: Request) -> Response:
        campaign = _campaign(request)
        query = _query(request, ("format", "attempts"))
        fmt = query.get("format", "csv")
        if fmt not in REPORT_FORMATS:
            raise BadRequest(422, "format: csv or jsonl", "format")
        attempts = parse_flag(query["attempts"], "attempts") if "attempts" in query else False
        await self._status(rt, campaign)
        lines = report_lines(rt.ledger, campaign, fmt, attempts=attempts)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        name = f"{campaign}{'-attempts' if attempts else ''}.{fmt}"
        return StreamingResponse(
            _chunks(lines, campaign),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # --- the list ------------------------------------------------------------------------

    async def list_campaigns(self, rt: _Runtime, request: Request) -> Response:
        query = _query(request, ("limit", "after", "prefix"))
        limit = DEFAULT_PAGE
        if "limit" in query:
            raw = query["limit"]
            if not (raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= MAX_PAGE):
                raise BadRequest(422, f"limit: a whole number from 1 to {MAX_PAGE}", "limit")
            limit = int(raw)
        for name in ("after", "prefix"):
            value = query.get(name)
            if value is not None and not CAMPAIGN_RE.fullmatch(value):
                raise BadRequest(422, f"{name}: not (the start of) a campaign id", name)
        page, after = await run_in_threadpool(
            lambda: rt.ledger.campaign_page(
                after=query.get("after", ""), limit=limit, prefix=query.get("prefix", "")
            )
        )
        return JSONResponse(
            {
                "campaigns": [{k: v for k, v in s.as_dict().items() if k != "held"} for s in page],
                "next": after,
            }
        )


def _chunks(lines: Iterator[str], campaign: str) -> Iterator[bytes]:
    """The report's lines gathered into chunks of about :data:`REPORT_CHUNK` bytes. A Redis
    error mid-way ends the stream short (the status line is gone already), and is logged."""
    buf: list[str] = []
    size = 0
    try:
        for text in lines:
            buf.append(text)
            size += len(text)
            if size >= REPORT_CHUNK:
                yield "".join(buf).encode("utf-8")
                buf, size = [], 0
    except redis.RedisError as exc:
        log.error("report campaign=%s cut short: Redis: %s", campaign, type(exc).__name__)
    if buf:
        yield "".join(buf).encode("utf-8")


async def _http_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, str(exc.detail), headers=exc.headers)
    return _error(500, "internal error")  # pragma: no cover


async def _server_error(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _error(500, "internal error")


def create_app(settings: Settings | None = None) -> Starlette:
    """The API. With ``settings``, they are checked now (:class:`ConfigError`); without,
    they are loaded from the environment when the app starts."""
    holder: list[_Runtime] = [_Runtime.build(settings)] if settings is not None else []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if not holder:
            holder.append(_Runtime.build(load_settings()))
        try:
            yield
        finally:
            for rt in holder:
                rt.close()

    def runtime() -> _Runtime | None:
        return holder[0] if holder else None

    api = _Api(runtime)
    page = Page(runtime)

    async def healthz(_: Request) -> Response:
        rt = runtime()
        if rt is None:
            return JSONResponse({"ok": False, "error": "not started"}, status_code=503)
        try:
            await run_in_threadpool(rt.ledger.redis.ping)
        except redis.RedisError:
            return JSONResponse({"ok": False, "error": "redis unavailable"}, status_code=503)
        return JSONResponse({"ok": True})

    async def livez(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def openapi(_: Request) -> Response:
        return JSONResponse(document())

    one = "/v1/campaigns/{campaign}"
    return Starlette(
        routes=[
            Route("/v1/campaigns", api.guarded(api.list_campaigns), methods=["GET"]),
            Route(one, api.guarded(api.get_campaign), methods=["GET"]),
            Route(one, api.guarded(api.patch_campaign), methods=["PATCH"]),
            Route(f"{one}/calls", api.guarded(api.post_calls), methods=["POST"]),
            Route(f"{one}/report", api.guarded(api.report), methods=["GET"]),
            Route(f"{one}/pause", api.guarded(api.pause), methods=["POST"]),
            Route(f"{one}/resume", api.guarded(api.resume), methods=["POST"]),
            Route(f"{one}/cancel", api.guarded(api.cancel), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *page.routes(),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


#: For ``uvicorn callq.api.app:app``; settings are loaded at start-up, not at import.
app = create_app()
