"""The Exotel client: request building, HTTP behaviour (with ``responses``), and the
classification of REAL transport errors over loopback sockets (no mocks)."""

from __future__ import annotations

import base64
import json
import logging
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses

from callq.errors import ExotelReplyError, InvalidRow
from callq.exotel.client import (
    ExotelClient,
    ExotelStatusError,
    classify_exception,
    make_session,
)
from callq.exotel.outcome import NotPlaced, Originated, Rejected, Unknown
from callq.exotel.params import build_connect_params, status_callback_url
from callq.settings import Settings, load_settings

BASE = "https://api.example.test"
SID = "acct_sid"
KEY = "KEY-very-secret"
TOKEN = "TOKEN-very-secret"
CB_TOKEN = "cb/tok&en"  # needs quoting
ACCOUNT = f"{BASE}/v1/Accounts/{SID}"

# Seed 002 (connect two numbers), the JSON success reply, as a server would send it.
SUCCESS = json.dumps(
    {
        "Call": {
            "Sid": "c5797dcbaaeed7678c4062a4a3ed2f8a",
            "ParentCallSid": None,
            "DateCreated": "2017-03-03 10:48:33",
            "Status": "in-progress",
            "Direction": "outbound-api",
        }
    }
)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "_env_file": None,
        "exotel_account_sid": SID,
        "exotel_api_key": KEY,
        "exotel_api_token": TOKEN,
        "exotel_base_url": BASE,
        "exotel_caller_id": "08030752400",
        "exotel_connect_timeout": 2.5,
        "exotel_read_timeout": 12.0,
        "exotel_timezone": "Asia/Kolkata",
        "callback_url": "https://cb.example.test/exotel/status-callback",
        "callback_token": CB_TOKEN,
    }
    values.update(overrides)
    return load_settings(**values)


def basic(key: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{token}".encode()).decode()


def form(request: requests.PreparedRequest) -> list[tuple[str, str]]:
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    return parse_qsl(text, keep_blank_values=True)


# --------------------------------------------------------------------------------------------
# build_connect_params

EXTRA = json.dumps(
    {
        "Record": "true",
        "CallType": "trans",
        "WaitUrl": "https://media.example.test/wait.wav",
        "RecordingChannels": "dual",
        "CustomField": "the user's own",  # kept in the ledger, never sent
        "StatusCallback": "https://elsewhere.example.test/",  # the queue owns callbacks
        "From": "+910000000000",  # cannot override the row
    }
)


def test_params_connect_two_numbers() -> None:
    record = {
        "from": "+919000000001",
        "to": "+919000000002",
        "caller_id": "",
        "url": "",
        "time_limit": "300",
        "time_out": "30",
        "extra": EXTRA,
        "custom_field": "the user's own",
    }
    params = build_connect_params(record, "camp1:row7", make_settings(), attempt=2)
    assert params == [
        ("From", "+919000000001"),
        ("To", "+919000000002"),
        ("CallerId", "08030752400"),
        ("TimeLimit", "300"),
        ("TimeOut", "30"),
        ("Record", "true"),
        ("CallType", "trans"),
        ("WaitUrl", "https://media.example.test/wait.wav"),
        ("RecordingChannels", "dual"),
        ("CustomField", "camp1:row7"),
        (
            "StatusCallback",
            "https://cb.example.test/exotel/status-callback?token=cb%2Ftok%26en"
            "&rid=camp1:row7&attempt=2",
        ),
        ("StatusCallbackEvents[0]", "terminal"),
        ("StatusCallbackContentType", "application/json"),
    ]


def test_params_connect_to_a_flow() -> None:
    url = f"http://my.exotel.com/{SID}/exoml/start_voice/926"
    record = {"from": "09876543210", "url": url, "caller_id": "0XXXXXX4890"}
    params = dict(build_connect_params(record, "rid-1", make_settings()))
    assert params["From"] == "09876543210"
    assert params["Url"] == url
    assert "To" not in params
    assert params["CallerId"] == "0XXXXXX4890"  # the row's own beats the setting
    assert params["CustomField"] == "rid-1"
    assert "TimeLimit" not in params and "TimeOut" not in params
    # A flow call's callback has no CustomField: the URL names the request instead.
    query = parse_qs(urlsplit(params["StatusCallback"]).query)
    assert query == {"token": ["cb/tok&en"], "rid": ["rid-1"]}


def test_status_callback_url_keeps_the_query_and_replaces_only_its_own_names() -> None:
    target = "https://cb.example.test/hook?token=a%2Fb%26c&tenant=x&rid=old&attempt=9&%72id=enc"
    url = status_callback_url(target, "camp-1:ab/cd ef", 3)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "cb.example.test", "/hook")
    # The token's encoding is kept byte for byte (the receiver compares it in constant time).
    assert parts.query.startswith("token=a%2Fb%26c&tenant=x&")
    assert parse_qs(parts.query) == {
        "token": ["a/b&c"],
        "tenant": ["x"],
        "rid": ["camp-1:ab/cd ef"],
        "attempt": ["3"],
    }
    assert status_callback_url("http://h/cb", "c:d") == "http://h/cb?rid=c:d"
    assert status_callback_url("http://h/cb?", "c:d", 0) == "http://h/cb?rid=c:d&attempt=0"


def test_status_callback_token_joins_an_existing_query_with_ampersand() -> None:
    settings = make_settings(callback_url="https://cb.example.test/hook?tenant=a")
    params = dict(build_connect_params({"from": "1", "to": "2"}, "r", settings))
    assert params["StatusCallback"] == (
        "https://cb.example.test/hook?tenant=a&token=cb%2Ftok%26en&rid=r"
    )


def test_no_callback_url_means_no_status_callback() -> None:
    settings = make_settings(callback_url=None)
    params = build_connect_params({"from": "1", "to": "2", "extra": EXTRA}, "r", settings)
    names = [name for name, _ in params]
    assert not [n for n in names if n.startswith("StatusCallback")]
    assert ("CustomField", "r") in params


def test_callback_without_token_is_sent_as_is() -> None:
    settings = make_settings(callback_token="")
    params = dict(build_connect_params({"from": "1", "to": "2"}, "r", settings))
    assert params["StatusCallback"] == "https://cb.example.test/exotel/status-callback?rid=r"


def test_extra_values_and_refusals() -> None:
    extra = json.dumps(
        {"Record": True, "TimeLimitX": 30, "Ratio": 1.5, "Skip": None, "Empty": "", "Arr": ["a", 2]}
    )
    params = build_connect_params({"from": "1", "to": "2", "extra": extra}, "r", make_settings())
    assert ("Record", "true") in params
    assert ("TimeLimitX", "30") in params
    assert ("Ratio", "1.5") in params
    assert ("Arr[0]", "a") in params and ("Arr[1]", "2") in params
    assert all(name not in ("Skip", "Empty") for name, _ in params)
    for bad in ("{not json", "[1, 2]", '{"Nested": {"a": 1}}'):
        with pytest.raises(InvalidRow) as info:
            build_connect_params({"from": "1", "to": "2", "extra": bad}, "r", make_settings())
        assert info.value.field == "extra"


# --------------------------------------------------------------------------------------------
# connect() over mocked HTTP


@responses.activate
def test_connect_posts_once_with_auth_form_and_timeouts() -> None:
    responses.post(f"{ACCOUNT}/Calls/connect.json", body=SUCCESS, status=200)
    settings = make_settings()
    params = build_connect_params({"from": "+919000000001", "to": "+919000000002"}, "r1", settings)
    client = ExotelClient(settings)
    outcome, elapsed = client.connect(params)
    assert outcome == Originated(sid="c5797dcbaaeed7678c4062a4a3ed2f8a", status="in-progress")
    assert 0 <= elapsed < 5
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.method == "POST"
    assert form(request) == params
    assert request.headers["Authorization"] == basic(KEY, TOKEN)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    kwargs = request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["timeout"] == (2.5, 12.0)
    assert isinstance(kwargs["timeout"], tuple)


@pytest.mark.parametrize(
    ("status", "kind"), [(500, NotPlaced), (504, Unknown), (502, Unknown), (503, Unknown)]
)
@responses.activate
def test_connect_5xx_is_not_retried(status: int, kind: type) -> None:
    responses.post(f"{ACCOUNT}/Calls/connect.json", body="oops", status=status)
    outcome, _ = ExotelClient(make_settings()).connect([("From", "1")])
    assert type(outcome) is kind
    assert len(responses.calls) == 1


@responses.activate
def test_connect_does_not_follow_redirects() -> None:
    responses.post(
        f"{ACCOUNT}/Calls/connect.json",
        status=307,
        headers={"Location": f"{ACCOUNT}/Calls/connect-again.json"},
    )
    responses.post(f"{ACCOUNT}/Calls/connect-again.json", body=SUCCESS)
    outcome, _ = ExotelClient(make_settings()).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
    assert len(responses.calls) == 1


@responses.activate
def test_connect_429_and_rejections() -> None:
    url = f"{ACCOUNT}/Calls/connect.json"
    responses.post(
        url,
        status=429,
        headers={"Retry-After": "7"},
        json={"RestException": {"Status": 429, "Message": "Too Many Requests"}},
    )
    responses.post(
        url, status=401, json={"RestException": {"Status": 401, "Message": "Authentication failed"}}
    )
    client = ExotelClient(make_settings())
    first, _ = client.connect([("From", "1")])
    assert first == NotPlaced(
        reason="Too Many Requests", http_status=429, retry_after=7.0, rate_limited=True
    )
    second, _ = client.connect([("From", "1")])
    assert second == Rejected(reason="Authentication failed", http_status=401, account_level=True)


@responses.activate
def test_explicit_credentials_override_settings() -> None:
    responses.post(f"{BASE}/v1/Accounts/other/Calls/connect.json", body=SUCCESS)
    client = ExotelClient(make_settings(), account_sid="other", api_key="k2", api_token="t2")
    outcome, _ = client.connect([("From", "1")])
    assert isinstance(outcome, Originated)
    assert responses.calls[0].request.headers["Authorization"] == basic("k2", "t2")


@responses.activate
def test_credentials_in_the_base_url_are_used_but_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    responses.post(f"{ACCOUNT}/Calls/connect.json", status=500, body="")
    settings = make_settings(
        exotel_base_url=f"https://{KEY}:{TOKEN}@api.example.test",
        exotel_api_key="",
        exotel_api_token="",
    )
    client = ExotelClient(settings)
    assert KEY not in repr(client) and KEY not in client.account_url
    with caplog.at_level(logging.DEBUG):
        client.connect([("From", "1")])
    request = responses.calls[0].request
    assert request.url is not None and KEY not in request.url
    assert request.headers["Authorization"] == basic(KEY, TOKEN)
    assert KEY not in caplog.text and TOKEN not in caplog.text


@responses.activate
def test_no_secret_in_repr_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings()
    params = build_connect_params({"from": "1", "to": "2"}, "r", settings)
    responses.post(
        f"{ACCOUNT}/Calls/connect.json",
        status=400,
        json={"RestException": {"Status": 400, "Message": f"Bad URL {params[-3][1]}"}},
    )
    responses.get(f"{ACCOUNT}/Calls/abc.json", status=500, body="boom")
    client = ExotelClient(settings)
    with caplog.at_level(logging.DEBUG):
        outcome, _ = client.connect(params)
        with pytest.raises(ExotelStatusError) as info:
            client.get_call("abc")
    secrets = (KEY, TOKEN, "cb%2Ftok%26en", CB_TOKEN)
    for text in (repr(client), str(outcome), caplog.text, str(info.value), repr(info.value)):
        assert not any(secret in text for secret in secrets), text


# --------------------------------------------------------------------------------------------
# Call Details


@responses.activate
def test_get_call() -> None:
    responses.get(f"{ACCOUNT}/Calls/abc.json", body=SUCCESS)
    responses.get(f"{ACCOUNT}/Calls/gone.json", status=404, body="")
    responses.get(f"{ACCOUNT}/Calls/busy.json", status=429, headers={"Retry-After": "2"})
    responses.get(f"{ACCOUNT}/Calls/junk.json", body="<html>")
    calls: list[str] = []
    client = ExotelClient(make_settings())
    call = client.get_call("abc", before_request=lambda: calls.append("permit"))
    assert call is not None and call["Sid"] == "c5797dcbaaeed7678c4062a4a3ed2f8a"
    assert calls == ["permit"]
    assert client.get_call("gone") is None
    with pytest.raises(ExotelStatusError) as info:
        client.get_call("busy")
    assert info.value.status == 429 and info.value.retry_after == 2.0
    with pytest.raises(ExotelReplyError):
        client.get_call("junk")
    assert responses.calls[0].request.req_kwargs["timeout"] == (2.5, 12.0)  # type: ignore[attr-defined]


def test_get_call_transport_failure_is_a_reply_error() -> None:
    port = closed_port()
    client = ExotelClient(make_settings(exotel_base_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(ExotelStatusError) as info:
        client.get_call("abc")
    assert info.value.status is None
    assert KEY not in str(info.value)


def _page(calls: list[str], next_uri: str | None) -> str:
    return json.dumps(
        {
            "Metadata": {"PageSize": 100, "NextPageUri": next_uri},
            "Calls": [{"Sid": sid, "Status": "completed"} for sid in calls],
        }
    )


@responses.activate
def test_search_calls_pages_and_filters() -> None:
    events: list[str] = []
    seen: list[dict[str, list[str]]] = []

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        events.append("request")
        query = parse_qs(urlsplit(request.url or "").query)
        seen.append(query)
        after = query.get("After", [""])[0]
        if not after:
            return (
                200,
                {},
                _page(["s1", "s2"], f"/v1/Accounts/{SID}/Calls.json?PageSize=100&After=p2"),
            )
        if after == "p2":  # an absolute URI, with the default port spelled out
            nxt = f"https://api.example.test:443/v1/Accounts/{SID}/Calls.json?PageSize=100&After=p3"
            return 200, {}, _page(["s3"], nxt)
        return 200, {}, _page([], None)

    responses.add_callback(
        responses.GET, re.compile(re.escape(f"{ACCOUNT}/Calls.json") + r".*"), callback=reply
    )
    client = ExotelClient(make_settings())
    found = client.search_calls(
        to=["+919000000002", "+919000000003"],
        from_=["+919000000001"],
        created_from=datetime(2024, 3, 1, 4, 30, tzinfo=UTC),  # 10:00 IST
        created_to=datetime(2024, 3, 1, 11, 0, 5, tzinfo=ZoneInfo("Asia/Kolkata")),
        before_request=lambda: events.append("permit"),
    )
    assert [c["Sid"] for c in found] == ["s1", "s2", "s3"]
    assert events == ["permit", "request"] * 3
    first = seen[0]
    assert first["To"] == ["+919000000002,+919000000003"]
    assert first["From"] == ["+919000000001"]
    assert first["DateCreated"] == ["gte:2024-03-01 10:00:00;lte:2024-03-01 11:00:05"]
    assert first["PageSize"] == ["100"]
    assert first["SortBy"] == ["DateCreated:asc"]
    # Later pages are fetched exactly as NextPageUri says.
    assert seen[1] == {"PageSize": ["100"], "After": ["p2"]}
    assert seen[2] == {"PageSize": ["100"], "After": ["p3"]}
    assert all(
        call.request.headers["Authorization"] == basic(KEY, TOKEN) for call in responses.calls
    )


@responses.activate
def test_search_calls_naive_datetimes_are_utc() -> None:
    responses.get(f"{ACCOUNT}/Calls.json", body=_page([], None))
    ExotelClient(make_settings()).search_calls(
        to=["+919000000002"],
        created_from=datetime(2024, 12, 31, 18, 30),
        created_to=datetime(2024, 12, 31, 19, 0),
    )
    query = parse_qs(urlsplit(responses.calls[0].request.url or "").query)
    assert query["DateCreated"] == ["gte:2025-01-01 00:00:00;lte:2025-01-01 00:30:00"]


@responses.activate
def test_search_calls_refuses_a_next_page_on_another_host() -> None:
    responses.get(
        f"{ACCOUNT}/Calls.json",
        body=_page(["s1"], "https://evil.example.test/v1/Accounts/x/Calls.json?After=1"),
    )
    with pytest.raises(ExotelStatusError):
        ExotelClient(make_settings()).search_calls(
            to=["1"], created_from=datetime(2024, 1, 1), created_to=datetime(2024, 1, 2)
        )
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, '{"Metadata": {}}'),
        (200, '{"Calls": {"Call": []}}'),
        (200, "<html>"),
        (500, "x"),
        (404, ""),
    ],
)
@responses.activate
def test_search_calls_never_returns_a_short_list_for_a_bad_reply(status: int, body: str) -> None:
    responses.get(f"{ACCOUNT}/Calls.json", status=status, body=body)
    with pytest.raises(ExotelReplyError) as info:
        ExotelClient(make_settings()).search_calls(
            to=["1"], created_from=datetime(2024, 1, 1), created_to=datetime(2024, 1, 2)
        )
    assert isinstance(info.value, ExotelStatusError) and info.value.status == status


def test_search_calls_argument_checks() -> None:
    client = ExotelClient(make_settings())
    day = datetime(2024, 1, 1)
    with pytest.raises(ValueError, match="at most 5"):
        client.search_calls(to=[str(n) for n in range(6)], created_from=day, created_to=day)
    with pytest.raises(ValueError, match="after"):
        client.search_calls(to=["1"], created_from=datetime(2024, 1, 2), created_to=day)


@responses.activate
def test_calls_by_sid_asks_for_the_sids_in_one_filter_with_a_permit_per_page() -> None:
    events: list[str] = []
    responses.get(f"{ACCOUNT}/Calls.json", body=_page(["s1", "s2"], None))
    client = ExotelClient(make_settings())
    found = client.calls_by_sid(["s1", "s2", "s3"], before_request=lambda: events.append("p"))
    assert [c["Sid"] for c in found] == ["s1", "s2"] and events == ["p"]
    query = parse_qs(urlsplit(responses.calls[0].request.url or "").query)
    assert query == {"Sid": ["s1,s2,s3"], "PageSize": ["100"], "SortBy": ["DateCreated:asc"]}
    assert client.calls_by_sid([]) == [] and len(responses.calls) == 1
    with pytest.raises(ValueError, match="at most 100"):
        client.calls_by_sid([f"s{n}" for n in range(101)])
    with pytest.raises(ValueError, match="','"):
        client.calls_by_sid(["a,b"])


# --------------------------------------------------------------------------------------------
# The transport never retries, and REAL transport errors (loopback sockets, no mocks)


def test_make_session_never_retries() -> None:
    session = make_session(pool_size=7)
    for prefix in ("http://", "https://"):
        adapter = session.get_adapter(prefix + "x")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        retry = adapter.max_retries
        assert (retry.total, retry.connect, retry.read, retry.redirect, retry.status) == (
            0,
            0,
            0,
            0,
            0,
        )
        assert retry.raise_on_status is False
        assert adapter._pool_maxsize == 7  # type: ignore[attr-defined]


@responses.activate
def test_make_session_reads_the_environment_once_per_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests looks up the proxies in os.environ on every request; the session keeps the
    answer per origin (scheme and host), since nothing else changes it."""
    looked: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        looked.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    responses.add(responses.POST, re.compile(r"https://(a|b)\.example\.test/.*"), body="{}")
    session = make_session()
    for path in ("/one", "/two?x=1", "/three"):
        session.post(f"https://a.example.test{path}", data=[("k", "v")], timeout=1)
    session.post("https://b.example.test/one", timeout=1)
    session.post("https://b.example.test/two", timeout=1)
    assert [urlsplit(u).netloc for u in looked] == ["a.example.test", "b.example.test"]
    # A request with proxies of its own is merged as requests does it, looked up again.
    session.post("https://a.example.test/four", proxies={"ftp": "http://x"}, timeout=1)
    assert len(looked) == 3


def test_make_session_still_follows_the_proxy_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY is honoured (the request goes to the proxy, in absolute form), and NO_PROXY
    exempts its hosts: the environment is kept, not ignored."""
    proxy = LoopbackServer(
        lambda conn, srv: (
            srv.requests.append(read_request(conn)),
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
        )
    )
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "direct.example.test")
        session = make_session()
        for _ in range(2):
            reply = session.post("http://via.example.test/x", data=[("k", "v")], timeout=2)
            assert reply.status_code == 200
        assert len(proxy.requests) == 2
        assert all(r.startswith(b"POST http://via.example.test/x ") for r in proxy.requests)
        with pytest.raises(requests.ConnectionError):  # not proxied: its own (unknown) host
            session.post("http://direct.example.test/x", timeout=2)
        assert len(proxy.requests) == 2
    finally:
        proxy.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def read_request(conn: socket.socket) -> bytes:
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.I)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


def reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class LoopbackServer:
    """Accepts connections on 127.0.0.1 and runs ``behaviour(conn, server)`` on each."""

    def __init__(self, behaviour: Callable[[socket.socket, LoopbackServer], None]) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                self.behaviour(conn, self)
            except Exception:  # noqa: S110 - the client side is what the tests look at
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[
    Callable[[Callable[[socket.socket, LoopbackServer], None]], LoopbackServer]
]:
    servers: list[LoopbackServer] = []

    def start(behaviour: Callable[[socket.socket, LoopbackServer], None]) -> LoopbackServer:
        server = LoopbackServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def loopback_client(port: int) -> ExotelClient:
    settings = make_settings(
        exotel_base_url=f"http://127.0.0.1:{port}",
        exotel_connect_timeout=1.0,
        exotel_read_timeout=0.3,
    )
    return ExotelClient(settings)


def post_and_classify(port: int) -> object:
    session = make_session()
    try:
        session.post(f"http://127.0.0.1:{port}/x", data=[("From", "1")], timeout=(1.0, 0.3))
    except requests.RequestException as exc:
        return classify_exception(exc)
    finally:
        session.close()
    raise AssertionError("the request should have failed")


def settle(server: LoopbackServer) -> None:
    """Give a would-be retry time to arrive before counting connections."""
    time.sleep(0.15)


def test_connection_refused_is_not_placed() -> None:
    port = closed_port()
    assert isinstance(post_and_classify(port), NotPlaced)
    outcome, _ = loopback_client(port).connect([("From", "1"), ("StatusCallback", CB_TOKEN)])
    assert isinstance(outcome, NotPlaced)
    assert outcome.http_status is None and not outcome.rate_limited
    assert CB_TOKEN not in outcome.reason


def test_unresolvable_host_is_not_placed() -> None:
    settings = make_settings(
        exotel_base_url="http://no-such-host.invalid", exotel_connect_timeout=2.0
    )
    outcome, _ = ExotelClient(settings).connect([("From", "1")])
    assert isinstance(outcome, NotPlaced)


def test_read_timeout_after_sending_is_unknown(serve: Callable[..., LoopbackServer]) -> None:
    def slow(conn: socket.socket, server: LoopbackServer) -> None:
        server.requests.append(read_request(conn))
        server.stop.wait(2)  # far past the 0.3 s read timeout

    server = serve(slow)
    outcome, elapsed = loopback_client(server.port).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
    assert "ReadTimeout" in outcome.reason
    assert 0.25 <= elapsed < 1.5
    assert server.requests and server.requests[0].startswith(b"POST /v1/Accounts/acct_sid/")
    assert isinstance(post_and_classify(serve(slow).port), Unknown)


def test_reset_after_reading_the_request_is_unknown(serve: Callable[..., LoopbackServer]) -> None:
    def read_then_reset(conn: socket.socket, server: LoopbackServer) -> None:
        server.requests.append(read_request(conn))
        reset(conn)

    server = serve(read_then_reset)
    outcome, _ = loopback_client(server.port).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
    settle(server)
    assert server.accepted == 1  # never re-sent
    assert isinstance(post_and_classify(serve(read_then_reset).port), Unknown)


def test_reset_before_reading_anything_is_unknown(serve: Callable[..., LoopbackServer]) -> None:
    # The server never reads: it waits until the request bytes sit unread in its kernel
    # buffer, then resets. The client wrote them and cannot know whether the server read
    # them: a connection broken after connect() returned is never "not placed".
    def reset_unread(conn: socket.socket, server: LoopbackServer) -> None:
        select.select([conn], [], [], 2)  # readable = bytes arrived; nothing is read
        reset(conn)

    server = serve(reset_unread)
    outcome, _ = loopback_client(server.port).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
    settle(server)
    assert server.accepted == 1
    assert isinstance(post_and_classify(serve(reset_unread).port), Unknown)


def test_reset_racing_connect_is_judged_by_where_it_failed(
    serve: Callable[..., LoopbackServer],
) -> None:
    # Reset right after accept(). Two timings are possible: the RST reaches the client after
    # connect() returned (the request may be in the buffers: Unknown), or connect() itself
    # reports ECONNRESET (urllib3: NewConnectionError) and the request was never written:
    # only then is NotPlaced correct.
    def reset_at_once(conn: socket.socket, server: LoopbackServer) -> None:
        reset(conn)

    for _ in range(5):
        server = serve(reset_at_once)
        outcome, _ = loopback_client(server.port).connect([("From", "1")])
        if isinstance(outcome, NotPlaced):
            assert "NewConnectionError" in outcome.reason
        else:
            assert isinstance(outcome, Unknown)
        settle(server)
        assert server.accepted == 1


def test_close_without_a_reply_is_unknown(serve: Callable[..., LoopbackServer]) -> None:
    def read_then_close(conn: socket.socket, server: LoopbackServer) -> None:
        read_request(conn)
        conn.shutdown(socket.SHUT_RDWR)

    server = serve(read_then_close)
    outcome, _ = loopback_client(server.port).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
    settle(server)
    assert server.accepted == 1


def test_a_real_500_is_sent_exactly_once(serve: Callable[..., LoopbackServer]) -> None:
    def fail(conn: socket.socket, server: LoopbackServer) -> None:
        server.requests.append(read_request(conn))
        body = b'{"RestException": {"Status": 500, "Message": "Could not originate"}}'
        conn.sendall(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        server.stop.wait(0.5)  # keep the connection open: a retry would need a new request

    server = serve(fail)
    outcome, _ = loopback_client(server.port).connect([("From", "1")])
    assert outcome == NotPlaced(reason="Could not originate", http_status=500, retry_after=1.0)
    settle(server)
    assert server.accepted == 1
    assert len(server.requests) == 1


def test_a_truncated_chunked_reply_is_unknown(serve: Callable[..., LoopbackServer]) -> None:
    def truncated(conn: socket.socket, server: LoopbackServer) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n40\r\n{"Call": {"Sid": "abc'
        )
        reset(conn)

    server = serve(truncated)
    outcome, _ = loopback_client(server.port).connect([("From", "1")])
    assert isinstance(outcome, Unknown)
