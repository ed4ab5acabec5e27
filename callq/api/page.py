"""The live campaign page, served by the API app: ``GET /`` (the campaigns) and
``GET /campaigns/{id}`` (one campaign, live), behind the API's tokens.

A browser logs in once with one of ``API_TOKEN``'s tokens (``/login``, a form); it gets a
session cookie (``callq_session``: HttpOnly, SameSite=Strict, Secure when the request came
over https; signed, see :mod:`callq.api.session`), never the token. The page is plain HTML,
CSS and JS from ``callq/api/static`` (no build step, nothing from the network), under a
Content-Security-Policy that allows no inline script or style. Its script polls:

- ``GET /ui/campaigns``: the list (the counters of ``GET /v1/campaigns``);
- ``GET /ui/campaigns/{id}/live``: ``status --json`` with its details, plus what
  :mod:`callq.api.live` derives from the ledger (the request rate over time, the in-doubt
  calls and how they were settled, the held reasons seen);
- ``POST /ui/campaigns/{id}/pause|resume|cancel``: the controls, with the session's CSRF token
  in ``X-CSRF-Token`` (and, when the browser sends one, an ``Origin`` of this host).

Without a session the pages redirect to ``/login`` (303) and ``/ui`` answers 401; a POST
without the CSRF token, or from another origin, gets 403.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from string import Template
from typing import Any, Protocol

import redis
from kombu.exceptions import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from callq.api.body import BadRequest, BodyTooLarge, read_bytes
from callq.api.live import LiveCache, rate_series, settled_counts
from callq.api.session import COOKIE, SESSION_SECONDS, Session, open_session, read_session
from callq.ids import CAMPAIGN_RE
from callq.intake import campaign_status
from callq.settings import ConfigError, Settings
from callq.store.ledger import CampaignStatus, Ledger

__all__ = ["CSP", "STATIC", "Page"]

log = logging.getLogger("callq.api.page")

#: No inline script or style, nothing from another origin, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, a browser's form POST says ``Origin: null``.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The files under ``/static/``, with their media types.
STATIC = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}
_TEMPLATES = ("login.html", "list.html", "campaign.html")
_LOGIN_BODY_BYTES = 4096
_LOGIN_FAILURE_DELAY = 0.5
ACTIONS = ("pause", "resume", "cancel")


class Runtime(Protocol):
    settings: Settings
    tokens: list[bytes]

    @property
    def ledger(self) -> Ledger: ...


def _asset(name: str) -> str:
    return (resources.files("callq.api") / "static" / name).read_text(encoding="utf-8")


def _safe_next(value: str | None) -> str:
    """A path of this site to go to after the login (anything else: ``/``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if not value.isprintable() or len(value) > 200:
        return "/"
    return value


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (``Origin`` of
    another host, or ``Sec-Fetch-Site`` cross-site)."""
    origin = request.headers.get("origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get(
        "host", ""
    ):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


class Page:
    """The page's routes on the API's runtime (settings, ledger, tokens)."""

    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self.runtime = runtime
        self.cache = LiveCache()
        self.templates = {name: Template(_asset(name)) for name in _TEMPLATES}
        self.static = {name: _asset(name) for name in STATIC}

    def routes(self) -> list[Route]:
        one = "/ui/campaigns/{campaign}"
        return [
            Route("/", self.html(self.list_page), methods=["GET"]),
            Route("/campaigns/{campaign}", self.html(self.campaign_page), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.ui(self.logout, post=True), methods=["POST"]),
            Route("/static/{name}", self.asset, methods=["GET"]),
            Route("/favicon.ico", self.favicon, methods=["GET"]),
            Route("/ui/campaigns", self.ui(self.list_json), methods=["GET"]),
            Route(f"{one}/live", self.ui(self.live), methods=["GET"]),
            Route(f"{one}/{{action}}", self.ui(self.control, post=True), methods=["POST"]),
        ]

    # --- plumbing ------------------------------------------------------------------------

    def _render(self, name: str, status: int = 200, **values: str) -> HTMLResponse:
        body = self.templates[name].safe_substitute(
            {k: html.escape(v, quote=True) for k, v in values.items()}
        )
        return HTMLResponse(body, status_code=status, headers=_HEADERS)

    def _session(self, rt: Runtime, request: Request) -> Session | None:
        return read_session(request.cookies.get(COOKIE), rt.tokens, time.time())

    def html(
        self, handler: Callable[[Runtime, Request, Session], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page: without a session, a redirect to the login form (and back after it)."""

        async def endpoint(request: Request) -> Response:
            rt = self.runtime()
            if rt is None:
                return HTMLResponse("not started", status_code=503, headers=_HEADERS)
            session = self._session(rt, request)
            if session is None:
                back = urllib.parse.quote(request.url.path, safe="/")
                return RedirectResponse(f"/login?next={back}", 303, headers=_HEADERS)
            return await handler(rt, request, session)

        return endpoint

    def ui(
        self,
        handler: Callable[[Runtime, Request, Session], Awaitable[Response]],
        *,
        post: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """A call of the page's script: 401 without a session; a POST needs the session's
        CSRF token and this origin (403). Bad input and Redis errors as the API's."""

        async def endpoint(request: Request) -> Response:
            rt = self.runtime()
            if rt is None:
                return JSONResponse({"error": "not started"}, 503, headers=_HEADERS)
            session = self._session(rt, request)
            if session is None:
                return JSONResponse({"error": "log in first"}, 401, headers=_HEADERS)
            if post:
                given = request.headers.get("x-csrf-token")
                if given is None and request.url.path == "/logout":
                    form = urllib.parse.parse_qs((await read_bytes(request, 1024)).decode())
                    given = (form.get("csrf") or [""])[0]
                if not (session.csrf_ok(given) and _same_origin(request)):
                    log.warning("page: %s %s refused (CSRF)", request.method, request.url.path)
                    return JSONResponse({"error": "CSRF check failed"}, 403, headers=_HEADERS)
            try:
                return await handler(rt, request, session)
            except BadRequest as exc:
                body = {"error": exc.message, "field": exc.field}
                return JSONResponse(body, exc.status, headers=_HEADERS)
            except BodyTooLarge:
                return JSONResponse({"error": "body too large"}, 413, headers=_HEADERS)
            except (redis.RedisError, OperationalError) as exc:
                log.error("%s %s: Redis: %s", request.method, request.url.path, type(exc).__name__)
                return JSONResponse(
                    {"error": "ledger unavailable, retry later"}, 503, headers=_HEADERS
                )

        return endpoint

    @staticmethod
    def _campaign(request: Request) -> str:
        campaign = str(request.path_params["campaign"])
        if not CAMPAIGN_RE.fullmatch(campaign):
            raise BadRequest(404, "no such campaign", "id")
        return campaign

    # --- login ---------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        nxt = _safe_next(request.query_params.get("next"))
        return self._render("login.html", next=nxt, error="")

    async def login(self, request: Request) -> Response:
        rt = self.runtime()
        if rt is None:
            return HTMLResponse("not started", status_code=503, headers=_HEADERS)
        if not _same_origin(request):
            return HTMLResponse("cross-site login refused", status_code=403, headers=_HEADERS)
        try:
            raw = await read_bytes(request, _LOGIN_BODY_BYTES)
        except BodyTooLarge:
            return HTMLResponse("body too large", status_code=413, headers=_HEADERS)
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), max_num_fields=8)
        given = (form.get("token") or [""])[0].strip().encode("utf-8", "replace")
        nxt = _safe_next((form.get("next") or ["/"])[0])
        match: bytes | None = None
        for token in rt.tokens:  # every one, in constant time, as the API's bearer check
            if hmac.compare_digest(given, token):
                match = token
        if match is None:
            client = request.client.host if request.client else "?"
            log.warning("page: login refused from %s", client)
            await asyncio.sleep(_LOGIN_FAILURE_DELAY)
            return self._render("login.html", 401, next=nxt, error="That is not an API token.")
        session = open_session(match, time.time())
        resp = RedirectResponse(nxt, 303, headers=_HEADERS)
        resp.set_cookie(
            COOKIE,
            session.cookie,
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("page: login from %s", request.client.host if request.client else "?")
        return resp

    async def logout(self, rt: Runtime, request: Request, session: Session) -> Response:
        resp = RedirectResponse("/login", 303, headers=_HEADERS)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    async def asset(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in STATIC:
            return Response("not found", 404, headers=_HEADERS)
        headers = {**_HEADERS, "Cache-Control": "no-cache"}
        return Response(self.static[name], media_type=STATIC[name], headers=headers)

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204, headers=_HEADERS)

    # --- pages ---------------------------------------------------------------------------

    async def list_page(self, rt: Runtime, request: Request, session: Session) -> Response:
        return self._render("list.html", csrf=session.csrf)

    async def campaign_page(self, rt: Runtime, request: Request, session: Session) -> Response:
        campaign = str(request.path_params["campaign"])
        if not CAMPAIGN_RE.fullmatch(campaign):
            return HTMLResponse("no such campaign", status_code=404, headers=_HEADERS)
        return self._render("campaign.html", csrf=session.csrf, campaign=campaign)

    # --- the script's calls --------------------------------------------------------------

    async def list_json(self, rt: Runtime, request: Request, session: Session) -> Response:
        after = request.query_params.get("after", "")
        if after and not CAMPAIGN_RE.fullmatch(after):
            raise BadRequest(422, "after: not a campaign id", "after")
        page, nxt = await run_in_threadpool(lambda: rt.ledger.campaign_page(after=after, limit=200))
        body = {
            "campaigns": [{k: v for k, v in s.as_dict().items() if k != "held"} for s in page],
            "next": nxt,
        }
        return JSONResponse(body, headers=_HEADERS)

    async def live(self, rt: Runtime, request: Request, session: Session) -> Response:
        campaign = self._campaign(request)
        body = await run_in_threadpool(self.live_view, rt, campaign)
        return JSONResponse(body, headers=_HEADERS)

    def _status(self, rt: Runtime, campaign: str) -> CampaignStatus:
        status = campaign_status(campaign, settings=rt.settings, ledger=rt.ledger)
        if status.total == 0:
            raise BadRequest(404, f"no campaign {campaign!r}", "id")
        return status

    def live_view(self, rt: Runtime, campaign: str) -> dict[str, Any]:
        """Everything the campaign page shows, in one answer."""
        status = self._status(rt, campaign)
        now = time.time()
        held = status.held
        message = held.message(now) if held is not None else ""
        held_log = self.cache.held_log(campaign)
        held_log.see(held, now, message)
        scanned = self.cache.scan(rt.ledger, campaign, status.total)
        account = str(status.controls.get("account", "default"))
        try:
            acct = rt.settings.for_account("" if account == "default" else account)
        except ConfigError:
            acct = rt.settings
        period = acct.rate_limit_period_seconds
        step, points = rate_series(scanned.times, period, scanned.taken)
        body = status.as_dict(details=True)
        body["held"] = None
        if held is not None:
            body["held"] = held.as_dict() | {"message": message, "until_epoch": held.until}
        body["held_log"] = held_log.shown()
        body["rate"] = {
            "account": account,
            "limit": acct.rate_limit_calls,
            "period_seconds": period,
            "step_seconds": round(step, 3),
            "points": points,
            "requests": len(scanned.times),
            "in_last_period": points[-1][1] if points else 0,
            "scanned_at": scanned.taken,
            "scan_seconds": round(scanned.duration, 3),
            "refresh_seconds": self.cache.max_age(status.total),
        }
        body["in_doubt"] = settled_counts(scanned.in_doubt) | {
            "by": scanned.in_doubt,
            "calls": scanned.in_doubt_calls,
        }
        body["server_time"] = now
        return body

    async def control(self, rt: Runtime, request: Request, session: Session) -> Response:
        campaign = self._campaign(request)
        action = str(request.path_params["action"])
        if action not in ACTIONS:
            raise BadRequest(404, f"no action {action!r} (use {', '.join(ACTIONS)})", "action")
        await run_in_threadpool(self._status, rt, campaign)
        if action == "pause":
            await run_in_threadpool(rt.ledger.pause, campaign)
            body: dict[str, Any] = {"campaign": campaign, "paused": True}
        elif action == "resume":
            parked = await run_in_threadpool(rt.ledger.resume, campaign)
            body = {"campaign": campaign, "paused": False, "parked": parked}
        else:
            cancelled = await run_in_threadpool(rt.ledger.cancel, campaign)
            body = {"campaign": campaign, "cancelled": cancelled}
        log.info("page: %s campaign=%s", action, campaign)
        return JSONResponse(body, headers=_HEADERS)
