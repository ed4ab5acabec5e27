"""The live campaign page's auth and data, on the real Redis over real HTTP (uvicorn on the
loopback): the token login and its signed session cookie, the CSRF check of the page's POSTs,
the Content-Security-Policy, and the live view's numbers against ``GET /v1/campaigns/{id}``.
The page in a real browser: tests/system/test_campaign_page.py."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from callq.api.page import CSP
from callq.api.session import COOKIE, open_session, read_session
from callq.settings import Settings
from callq.store.ledger import Ledger
from tests.integration.test_api import (
    AUTH,
    OLD_TOKEN,
    TOKEN,
    agent_file,
    api_settings,
    post_csv,
    serve,
)

__all__ = ["api_settings"]  # the fixture, shared with the API's tests


@pytest.fixture
def base(api_settings: Settings) -> Iterator[str]:
    server = serve(api_settings)
    with server:
        yield server.base  # type: ignore[attr-defined]


def server_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (callq and uvicorn; not the test's own HTTP client)."""
    return "\n".join(
        r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("callq", "uvicorn")
    )


def browser(base: str) -> httpx.Client:
    """A client as a browser is: no bearer token, cookies kept, redirects not followed."""
    return httpx.Client(base_url=base, timeout=30, follow_redirects=False)


def login(client: httpx.Client, token: str = TOKEN, nxt: str = "/") -> httpx.Response:
    return client.post("/login", data={"token": token, "next": nxt})


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def campaign(base: str) -> str:
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as api:
        resp = post_csv(api, "page-one", agent_file(5, bad=False), window="00:00-00:01")
        assert resp.status_code == 200, resp.text
    return "page-one"


def test_given_no_session_when_the_pages_are_asked_for_then_a_redirect_to_the_login_and_401(
    base: str, campaign: str
) -> None:
    with browser(base) as b:
        for path, back in (("/", "/"), (f"/campaigns/{campaign}", f"/campaigns/{campaign}")):
            resp = b.get(path)
            assert resp.status_code == 303
            assert resp.headers["location"] == f"/login?next={back}"
        assert b.get("/ui/campaigns").status_code == 401
        assert b.get(f"/ui/campaigns/{campaign}/live").status_code == 401
        assert b.post(f"/ui/campaigns/{campaign}/pause").status_code == 401
        # The API's bearer token does not open the page, nor a session the API.
        assert b.get("/", headers=AUTH).status_code == 303
        form = b.get("/login?next=/campaigns/x")
        assert form.status_code == 200 and 'value="/campaigns/x"' in form.text
        # Only a path of this site is a place to go back to.
        assert 'value="/"' in b.get("/login?next=//evil.example/x").text


def test_given_a_wrong_token_when_logging_in_then_401_and_no_cookie(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with browser(base) as b:
        resp = login(b, "not-the-token-at-all")
        assert resp.status_code == 401
        assert "That is not an API token." in resp.text
        assert "set-cookie" not in resp.headers
        assert b.get("/").status_code == 303
        assert login(b, "").status_code == 401
        assert login(b, TOKEN[:-1]).status_code == 401
    assert "page: login refused from 127.0.0.1" in server_logs(caplog)
    assert "not-the-token-at-all" not in server_logs(caplog)


def test_given_the_token_when_logging_in_then_a_signed_httponly_strict_cookie_without_it(
    base: str, campaign: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with browser(base) as b:
        resp = login(b, TOKEN, f"/campaigns/{campaign}")
        assert resp.status_code == 303
        assert resp.headers["location"] == f"/campaigns/{campaign}"
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        attrs = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert "secure" not in attrs  # plain http on the loopback
        value = b.cookies[COOKIE]
        assert TOKEN not in value and OLD_TOKEN not in value
        page = b.get(f"/campaigns/{campaign}")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        # No inline script or style: every <script> has a src, no style attribute.
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
        assert " style=" not in page.text and "<style" not in page.text
        assert b.get("/ui/campaigns").json()["campaigns"][0]["campaign"] == campaign
        # The rotated-out token still logs in while it is in API_TOKEN.
        with browser(base) as other:
            assert login(other, OLD_TOKEN).status_code == 303
            assert other.get("/").status_code == 200
    logged = server_logs(caplog)
    assert "page: login from 127.0.0.1" in logged
    assert TOKEN not in logged and value not in logged


def test_given_https_at_the_proxy_when_logging_in_then_the_cookie_is_secure(base: str) -> None:
    # uvicorn trusts X-Forwarded-Proto from the loopback (FORWARDED_ALLOW_IPS).
    with browser(base) as b:
        resp = b.post(
            "/login", data={"token": TOKEN, "next": "/"}, headers={"X-Forwarded-Proto": "https"}
        )
        assert resp.status_code == 303
        assert "secure" in [a.strip().lower() for a in resp.headers["set-cookie"].split(";")]


def test_given_a_tampered_or_expired_cookie_when_used_then_it_is_refused(
    base: str, api_settings: Settings
) -> None:
    tokens = api_settings.api_tokens()
    good = open_session(tokens[0], time.time()).cookie
    issued, expires, nonce, sig = good.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    forged = [
        f"{issued}.{expires}.{nonce}.{flipped}",  # signature changed
        f"{issued}.{int(expires) + 86400}.{nonce}.{sig}",  # expiry pushed out
        f"{issued}.{expires}.{'0' * 32}.{sig}",  # another nonce
        f"{issued}.{expires}.{nonce}",  # no signature
        TOKEN,  # the raw token as a cookie
        open_session(tokens[0], time.time() - 13 * 3600).cookie,  # expired
        open_session(b"some-other-token-1234", time.time()).cookie,  # another key
    ]
    for value in forged:
        assert read_session(value, tokens, time.time()) is None, value
        with browser(base) as b:
            b.cookies.set(COOKIE, value)
            assert b.get("/").status_code == 303, value
            assert b.get("/ui/campaigns").status_code == 401, value
    with browser(base) as b:
        b.cookies.set(COOKIE, good)
        assert b.get("/").status_code == 200


def test_given_a_token_removed_from_api_token_then_its_sessions_end(
    api_settings: Settings,
) -> None:
    old = open_session(OLD_TOKEN.encode(), time.time()).cookie
    rotated = api_settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    server = serve(rotated)
    with server, browser(server.base) as b:  # type: ignore[attr-defined]
        b.cookies.set(COOKIE, old)
        assert b.get("/").status_code == 303
        assert login(b, OLD_TOKEN).status_code == 401


def test_given_a_session_when_posting_without_the_csrf_token_or_cross_site_then_403(
    base: str, campaign: str, ledger: Ledger
) -> None:
    with browser(base) as b:
        assert login(b).status_code == 303
        csrf = csrf_of(b, f"/campaigns/{campaign}")
        url = f"/ui/campaigns/{campaign}/pause"
        assert b.post(url).status_code == 403
        wrong = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # one character off, never equal
        assert b.post(url, headers={"X-CSRF-Token": wrong}).status_code == 403
        # Another session's token is not this one's.
        with browser(base) as other:
            login(other)
            assert b.post(url, headers={"X-CSRF-Token": csrf_of(other)}).status_code == 403
        evil = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
        assert b.post(url, headers=evil).status_code == 403
        site = {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
        assert b.post(url, headers=site).status_code == 403
        assert ledger.redis.hget(ledger.keys.campaign_meta(campaign), "paused") != "1"
        ok = b.post(url, headers={"X-CSRF-Token": csrf, "Origin": base})
        assert ok.status_code == 200 and ok.json()["paused"] is True
        assert ledger.redis.hget(ledger.keys.campaign_meta(campaign), "paused") == "1"
        resumed = b.post(f"/ui/campaigns/{campaign}/resume", headers={"X-CSRF-Token": csrf})
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        assert (
            b.post(f"/ui/campaigns/{campaign}/explode", headers={"X-CSRF-Token": csrf}).status_code
            == 404
        )
        assert b.post("/ui/campaigns/nope/pause", headers={"X-CSRF-Token": csrf}).status_code == 404
        # Logging out needs the token too (a form field), and ends the page for this browser.
        assert b.post("/logout").status_code == 403
        out = b.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert b.get("/").status_code == 303


def test_given_a_login_from_another_site_then_403(base: str) -> None:
    with browser(base) as b:
        resp = b.post(
            "/login", data={"token": TOKEN, "next": "/"}, headers={"Origin": "https://evil.example"}
        )
        assert resp.status_code == 403 and "set-cookie" not in resp.headers


def test_given_a_campaign_when_its_live_view_is_read_then_it_agrees_with_the_api(
    base: str, campaign: str
) -> None:
    with browser(base) as b, httpx.Client(base_url=base, headers=AUTH, timeout=30) as api:
        login(b)
        live = b.get(f"/ui/campaigns/{campaign}/live")
        assert live.status_code == 200, live.text
        assert live.headers["cache-control"] == "no-store"
        view = live.json()
        status = api.get(f"/v1/campaigns/{campaign}", params={"details": "true"}).json()
        for key in ("campaign", "total", "states", "call_status", "parked", "controls"):
            assert view[key] == status[key], key
        assert view["held"]["reason"] == status["held"]["reason"] == "window"
        assert view["held_log"][0]["reason"] == "window"
        assert view["rate"]["points"] == [] and view["rate"]["requests"] == 0
        assert view["rate"]["limit"] == 200 and view["in_doubt"]["entered"] == 0
        assert b.get("/ui/campaigns/nope/live").status_code == 404
        assert b.get("/ui/campaigns/bad id!/live").status_code == 404
        for name, kind in (("page.js", "javascript"), ("page.css", "css")):
            asset = b.get(f"/static/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
        assert b.get("/static/../app.py").status_code == 404
        assert b.get("/static/login.html").status_code == 404
