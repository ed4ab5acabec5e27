"""The Exotel voice API client: Calls/connect, and Call Details look-ups for reconciliation.

* One pooled :class:`requests.Session` whose transport never re-sends anything
  (:func:`make_session`): a POST that may have reached Exotel must not go out twice.
* :meth:`ExotelClient.connect` never raises for HTTP or transport problems. It returns one of
  the four outcomes of :mod:`callq.exotel.outcome` (classified by :mod:`callq.exotel.replies`).
* Secrets (API key and token, the callback token inside the StatusCallback URL) never appear
  in an exception message, a repr or a log line. Parameters are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from urllib3.util.retry import Retry

from callq.errors import ExotelReplyError
from callq.exotel.outcome import Outcome
from callq.exotel.replies import (
    ExotelStatusError,
    cause_chain,
    classify_exception,
    classify_response,
    describe_exception,
    error_message,
    header_value,
    parse_reply,
    parse_retry_after,
)
from callq.settings import Settings

if TYPE_CHECKING:
    from requests.sessions import _Settings

__all__ = [
    "MAX_SEARCH_FILTER",
    "MAX_SIDS_PER_REQUEST",
    "ExotelClient",
    "ExotelStatusError",
    "classify_exception",
    "classify_response",
    "make_session",
    "parse_reply",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

MAX_SEARCH_FILTER = 5
"""Call Details accepts at most five numbers in each of To and From."""
MAX_SIDS_PER_REQUEST = 100
"""Bulk Call Details accepts at most 100 Sids (20 recommended)."""
MAX_SEARCH_PAGES = 1000
_EXOTEL_TIME = "%Y-%m-%d %H:%M:%S"
_ACCEPT_JSON = {"Accept": "application/json"}


class _EnvOnceSession(requests.Session):
    """A session that reads the environment's settings for a request (the proxies of
    ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names the host, and
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``) once per origin, not on every request.

    requests looks them up on every call (``merge_environment_settings``: a scan of
    ``os.environ`` and a ``NO_PROXY`` match), about 5 % of a worker's CPU per placed call in
    the many-accounts bench. What it finds depends only on the environment and the URL's
    scheme and host (never its path or query), so the first answer for an origin is kept.
    A request that passes its own ``proxies``, ``stream``, ``verify`` or ``cert`` is merged
    as requests does it; the environment is read at a worker's first request to an origin,
    so a change to it needs a restart (as every other setting does)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_origin: dict[tuple[str, str], _Settings] = {}

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: bool | None,
        verify: Any,
        cert: Any,
    ) -> _Settings:
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        raw = url.decode() if isinstance(url, bytes) else str(url)
        parts = urlsplit(raw)
        origin = (parts.scheme.lower(), parts.netloc.lower())
        got = self._by_origin.get(origin)
        if got is None:
            # Two threads may both look it up the first time: the same answer, kept once.
            got = super().merge_environment_settings(url, {}, None, None, None)
            self._by_origin[origin] = got
        out = got.copy()
        out["proxies"] = dict(got["proxies"])  # the caller's own copy, as requests gives it
        return out


def make_session(pool_size: int = 32) -> requests.Session:
    """A pooled session whose transport never retries: a POST is never re-sent.

    urllib3's Retry is zero on every count (connect, read, redirect, status, other) and
    does not raise on status, so every reply, 5xx included, comes back to the caller.
    """
    if pool_size < 1:
        raise ValueError("pool_size must be at least 1")
    retry = Retry(
        total=0,
        connect=0,
        read=0,
        redirect=0,
        status=0,
        other=0,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
    session = _EnvOnceSession()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --------------------------------------------------------------------------------------------
# The client


def _split_base(base: str) -> tuple[str, str, str]:
    """``scheme://host[:port]/prefix`` without user-info, query or fragment; plus the
    user-info's user and password (if someone put credentials in EXOTEL_BASE_URL)."""
    parts = urlsplit(base)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


def _origin_key(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _exotel_time(value: datetime, zone: ZoneInfo) -> str:
    """A bound of a DateCreated filter, in Exotel's zone. A naive datetime is UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime(_EXOTEL_TIME)


class ExotelClient:
    """Calls/connect and Call Details for one Exotel account.

    Explicit ``account_sid``/``api_key``/``api_token`` override the settings (several
    accounts in one process). The client holds no lock and may be shared by threads.
    """

    def __init__(
        self,
        settings: Settings,
        session: requests.Session | None = None,
        account_sid: str | None = None,
        api_key: str | None = None,
        api_token: str | None = None,
    ) -> None:
        self._settings = settings
        self._session = session if session is not None else make_session()
        self._base, url_user, url_password = _split_base(settings.exotel_api_base)
        self.account_sid = account_sid if account_sid is not None else settings.exotel_account_sid
        key = api_key if api_key is not None else settings.exotel_api_key.get_secret_value()
        token = api_token if api_token is not None else settings.exotel_api_token.get_secret_value()
        if not key and not token and url_user:
            key, token = url_user, url_password
        self._api_key = SecretStr(key)
        self._api_token = SecretStr(token)
        self._timeout = (settings.exotel_connect_timeout, settings.exotel_read_timeout)
        self._zone = ZoneInfo(settings.exotel_timezone)

    def __repr__(self) -> str:
        return f"ExotelClient(base={self._base!r}, account_sid={self.account_sid!r})"

    @property
    def account_url(self) -> str:
        return f"{self._base}/v1/Accounts/{quote(self.account_sid, safe='')}"

    def close(self) -> None:
        self._session.close()

    def _auth(self) -> HTTPBasicAuth:
        return HTTPBasicAuth(self._api_key.get_secret_value(), self._api_token.get_secret_value())

    # Calls/connect -------------------------------------------------------------------------

    def connect(self, params: list[tuple[str, str]]) -> tuple[Outcome, float]:
        """POST Calls/connect once. Returns (outcome, elapsed seconds). Never raises for HTTP
        or transport problems: what cannot be understood is Unknown (the call is in doubt).

        Redirects are not followed (a 3xx is Unknown) and the transport never retries.
        """
        url = f"{self.account_url}/Calls/connect.json"
        status: int | None = None
        started = time.monotonic()
        try:
            response = self._session.post(
                url,
                data=params,
                auth=self._auth(),
                timeout=self._timeout,
                allow_redirects=False,
                headers=_ACCEPT_JSON,
            )
        except Exception as exc:
            outcome = classify_exception(exc)
        else:
            try:
                status = response.status_code
                outcome = classify_response(status, response.headers, response.content)
            except Exception as exc:  # reading the body failed after the request went out
                outcome = classify_exception(exc)
            finally:
                response.close()
        elapsed = time.monotonic() - started
        log.info(
            "exotel connect: %s http=%s sid=%s elapsed=%.3fs reason=%s",
            outcome.kind,
            status,
            getattr(outcome, "sid", None),
            elapsed,
            getattr(outcome, "reason", ""),
        )
        return outcome, elapsed

    # Call Details ----------------------------------------------------------------------------

    def _get(
        self,
        url: str,
        params: list[tuple[str, str]] | None,
        before_request: Callable[[], None] | None,
        what: str,
    ) -> dict[str, Any] | None:
        """One GET. Returns the parsed 200 reply, or None for a 404; raises
        :class:`ExotelStatusError` for anything else."""
        if before_request is not None:
            before_request()
        try:
            response = self._session.get(
                url,
                params=params,
                auth=self._auth(),
                timeout=self._timeout,
                allow_redirects=False,
                headers=_ACCEPT_JSON,
            )
            try:
                status, headers, body = response.status_code, response.headers, response.content
            finally:
                response.close()
        except Exception as exc:  # transport, or anything requests raised: status unknown
            raise ExotelStatusError(
                f"{what}: request failed: {describe_exception(cause_chain(exc))}", status=None
            ) from exc
        if status == 404:
            return None
        ctype = header_value(headers, "Content-Type")
        if status != 200:
            try:
                message = error_message(parse_reply(body, ctype))
            except ExotelReplyError:
                message = ""
            raise ExotelStatusError(
                f"{what}: HTTP {status}" + (f": {message}" if message else ""),
                status=status,
                retry_after=(
                    parse_retry_after(header_value(headers, "Retry-After"))
                    if status == 429
                    else None
                ),
            )
        try:
            return parse_reply(body, ctype)
        except ExotelReplyError as exc:
            raise ExotelStatusError(f"{what}: {exc}", status=status) from None

    def get_call(
        self, sid: str, *, before_request: Callable[[], None] | None = None
    ) -> dict[str, Any] | None:
        """GET Calls/{sid}.json: the ``Call`` object, or None when Exotel has no such call.

        Raises :class:`ExotelStatusError` (an :class:`ExotelReplyError`) on other failures.
        """
        url = f"{self.account_url}/Calls/{quote(sid, safe='')}.json"
        reply = self._get(url, None, before_request, "Call Details")
        if reply is None:
            return None
        call = reply.get("Call")
        if not isinstance(call, dict):
            raise ExotelStatusError("Call Details: reply has no Call object", status=200)
        return call

    def search_calls(
        self,
        *,
        to: list[str] | None = None,
        from_: list[str] | None = None,
        created_from: datetime,
        created_to: datetime,
        before_request: Callable[[], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every call matching the filters, oldest first, across all pages.

        ``before_request()`` runs before every HTTP request (pass the global limiter).
        A reply that cannot be read raises rather than returning a short list: "not found"
        is what proves a call unplaced, so it must never come from a misread page.
        """
        to = [n for n in (to or []) if n]
        from_ = [n for n in (from_ or []) if n]
        if len(to) > MAX_SEARCH_FILTER or len(from_) > MAX_SEARCH_FILTER:
            raise ValueError(f"at most {MAX_SEARCH_FILTER} numbers each in To and From")
        if created_from.tzinfo is None:
            created_from = created_from.replace(tzinfo=UTC)
        if created_to.tzinfo is None:
            created_to = created_to.replace(tzinfo=UTC)
        if created_from > created_to:
            raise ValueError("created_from is after created_to")
        query: list[tuple[str, str]] = []
        if to:
            query.append(("To", ",".join(to)))
        if from_:
            query.append(("From", ",".join(from_)))
        window = (
            f"gte:{_exotel_time(created_from, self._zone)};"
            f"lte:{_exotel_time(created_to, self._zone)}"
        )
        query += [("DateCreated", window), ("PageSize", "100"), ("SortBy", "DateCreated:asc")]
        return self._list_calls(query, before_request, "Call search")

    def calls_by_sid(
        self, sids: list[str], *, before_request: Callable[[], None] | None = None
    ) -> list[dict[str, Any]]:
        """Bulk Call Details: the calls with these Sids (at most
        :data:`MAX_SIDS_PER_REQUEST`) that Exotel lists, i.e. that have ended. A Sid it does
        not list is simply absent. ``before_request()`` runs before every HTTP request."""
        sids = [s for s in sids if s]
        if not sids:
            return []
        if len(sids) > MAX_SIDS_PER_REQUEST:
            raise ValueError(f"at most {MAX_SIDS_PER_REQUEST} Sids per request")
        if any("," in s for s in sids):
            raise ValueError("a Sid must not contain ','")
        query = [("Sid", ",".join(sids)), ("PageSize", "100"), ("SortBy", "DateCreated:asc")]
        return self._list_calls(query, before_request, "Call details by Sid")

    def _list_calls(
        self,
        query: list[tuple[str, str]],
        before_request: Callable[[], None] | None,
        what: str,
    ) -> list[dict[str, Any]]:
        """Every page of ``Calls.json`` for ``query``. A page that cannot be read raises
        rather than returning a short list."""
        url = f"{self.account_url}/Calls.json"
        params: list[tuple[str, str]] | None = query
        seen: set[str] = set()
        calls: list[dict[str, Any]] = []
        for _page in range(MAX_SEARCH_PAGES):
            reply = self._get(url, params, before_request, what)
            if reply is None:
                raise ExotelStatusError(f"{what}: HTTP 404", status=404)
            page = reply.get("Calls")
            if not isinstance(page, list) or not all(isinstance(c, dict) for c in page):
                raise ExotelStatusError(f"{what}: reply has no Calls list", status=200)
            calls.extend(page)
            metadata = reply.get("Metadata")
            next_uri = metadata.get("NextPageUri") if isinstance(metadata, dict) else None
            if not isinstance(next_uri, str) or not next_uri.strip():
                return calls
            seen.add(url if params is None else f"{url}?{params!r}")
            url = self._next_page_url(url, next_uri.strip())
            params = None
            if url in seen:
                raise ExotelStatusError(f"{what}: NextPageUri repeats a page", status=200)
        raise ExotelStatusError(f"{what}: more than {MAX_SEARCH_PAGES} pages", status=200)

    def _next_page_url(self, current: str, next_uri: str) -> str:
        """Resolve Metadata.NextPageUri (relative or absolute). An absolute URI must point at
        the configured API host: our credentials are never sent anywhere else."""
        parts = urlsplit(next_uri)
        if parts.scheme or parts.netloc:
            if parts.username or parts.password or _origin_key(next_uri) != _origin_key(self._base):
                raise ExotelStatusError(
                    f"Call search: NextPageUri points away from the API host "
                    f"({parts.hostname or '?'})",
                    status=200,
                )
            base = urlsplit(self._base)
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        if next_uri.startswith("/"):
            base = urlsplit(self._base)
            prefix = base.path.rstrip("/")
            path = parts.path
            if prefix and not (path == prefix or path.startswith(prefix + "/")):
                path = prefix + path  # EXOTEL_BASE_URL with a path prefix (a proxy)
            return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))
        return urljoin(current, next_uri)
