"""The HTTP API (callq.api) on the real Redis: uvicorn on the loopback driven over real HTTP,
and, for the fuzzing, httpx's ASGI transport. Its answers are checked against what the
producer's command line says for the same campaign (``enqueue --json``, ``status --json``,
``report``, ``set``)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from callq.api.app import create_app
from callq.intake import cli
from callq.settings import ConfigError, Settings
from callq.store.ledger import Ledger
from tests.campaigns import AGENT, mobile
from tests.conftest import ServerThread, make_settings, wait_for
from tests.integration.test_callbacks import AsgiClient, _child_env, free_port

TOKEN = "api-token-4f1c9a2e7b"
OLD_TOKEN = "api-token-old-83d0c6"  # a second token: a key being rotated
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]


def agent_file(n: int, *, bad: bool = True) -> bytes:
    """A click-to-call file as operators have it: the agent in From on every row, the
    customers' numbers in the formats Indian files use (E.164, 10 digits, 0-prefixed, with
    spaces), and a few bad rows."""
    rows = ["From,To,CallerId,CustomField,TimeLimit,TimeOut"]
    for i in range(n):
        digits = mobile("97", i)[3:]  # 10 digits
        to = (f"+91{digits}", digits, f"0{digits}", f"{digits[:5]} {digits[5:]}")[i % 4]
        rows.append(f"{AGENT},{to},08030752400,order-{i},600,30")
    if bad:
        rows.append(f"{AGENT},12345,08030752400,bad-to,600,30")
        rows.append(f"{AGENT},{mobile('97', 900)},08030752400,bad-limit,99999,30")
        rows.append(f"{AGENT},{mobile('97', 0)},08030752400,order-0,600,30")  # row 2 again
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def api_settings(redis_url: str, prefix: str) -> Settings:
    return make_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        broker_key_prefix=f"{prefix}.",
        api_token=f"{TOKEN},{OLD_TOKEN}",
        exotel_caller_id="08030752400",
    )


def serve(settings: Settings) -> ServerThread:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = ServerThread(sock, create_app(settings))
    server.base = f"http://127.0.0.1:{sock.getsockname()[1]}"  # type: ignore[attr-defined]
    return server


@pytest.fixture
def api(api_settings: Settings) -> Iterator[httpx.Client]:
    """A client on the API served by uvicorn on the loopback, with the token."""
    server = serve(api_settings)
    with server, httpx.Client(base_url=server.base, headers=AUTH, timeout=30) as client:  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def cli_env(api_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The producer's command line (in this process) on the same Redis keys."""
    for name, value in api_settings.to_env().items():
        monkeypatch.setenv(name, value)
    return api_settings


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().out


def post_csv(client: Any, campaign: str, data: bytes, **params: str) -> httpx.Response:
    return client.post(  # type: ignore[no-any-return]
        f"/v1/campaigns/{campaign}/calls",
        content=data,
        params=params,
        headers={"Content-Type": "text/csv"},
    )


# --- enqueue -------------------------------------------------------------------------------


def test_given_an_agent_file_when_posted_as_csv_then_the_counts_and_reasons_are_the_clis(
    api: httpx.Client,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    ledger: Ledger,
) -> None:
    data = agent_file(8)
    resp = post_csv(api, "api-agent", data)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    path = tmp_path / "calls.csv"
    path.write_bytes(data)
    rc, out = run_cli(capsys, "enqueue", str(path), "--campaign", "cli-agent", "--json")
    assert rc == 3
    expected = json.loads(out)
    assert {k: v for k, v in body.items() if k not in ("campaign", "rejected_rows", "held")} == {
        k: v for k, v in expected.items() if k != "campaign"
    }
    # One agent number in From on every row is a campaign, not a duplicate.
    assert body["accepted"] == 8 and body["duplicates"] == 1 and body["rejected"] == 2
    assert body["errors"] == [
        "line 10: To: '12345' is not a valid phone number (too short)",
        body["errors"][1],
    ]
    assert body["errors"][1].startswith("line 11: TimeLimit:")
    assert body["rejected_rows"][0] == {
        "line": 10,
        "field": "To",
        "message": "'12345' is not a valid phone number (too short)",
    }
    assert body["duplicate_rows"] == ["line 12: row: the same call as line 2; kept line 2"]
    records = list(ledger.iter_records("api-agent"))
    assert len(records) == 8
    assert {r["from"] for r in records} == {AGENT}
    assert sorted(r["to"] for r in records) == sorted(mobile("97", i) for i in range(8))


def test_given_the_same_file_when_posted_again_then_nothing_is_added(
    api: httpx.Client, ledger: Ledger
) -> None:
    data = agent_file(6, bad=False)
    first = post_csv(api, "api-again", data).json()
    assert (first["accepted"], first["existing"]) == (6, 0)
    keys_before = sorted(ledger.redis.scan_iter(match=f"{ledger.keys.prefix}:call:*"))
    again = post_csv(api, "api-again", data)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["existing"]) == (0, 6)
    # The same rows as a multipart upload and as JSON add nothing either.
    files = {"file": ("calls.csv", data, "text/csv")}
    assert api.post("/v1/campaigns/api-again/calls", files=files).json()["existing"] == 6
    assert sorted(ledger.redis.scan_iter(match=f"{ledger.keys.prefix}:call:*")) == keys_before
    assert ledger.status("api-again").total == 6


def test_given_a_multipart_upload_with_controls_when_posted_then_the_campaign_keeps_them(
    api: httpx.Client,
) -> None:
    files = {"file": ("calls.csv", agent_file(3, bad=False), "text/csv")}
    fields = {
        "window": "10:00-19:00",
        "end_at": "2030-11-24T19:00+05:30",
        "redial_on": "busy,no-answer",
        "redials": "2",
        "redial_interval": "900",
        "weight": "2",
        "number_cap": "2/1d",
    }
    resp = api.post("/v1/campaigns/api-form/calls", files=files, data=fields)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 3
    # Held by its window exactly when now (IST) is outside 10:00-19:00: the test runs at any hour.
    now = datetime.now(ZoneInfo("Asia/Kolkata")).time()
    inside = time(10, 0) <= now < time(19, 0)
    held = resp.json()["held"]
    assert (held is None) if inside else (held is not None and held["reason"] == "window"), held
    controls = api.get("/v1/campaigns/api-form", params={"details": "true"}).json()["controls"]
    assert controls["window"] == "10:00-19:00"
    assert controls["end_at"] == "2030-11-24T19:00:00+05:30"
    assert controls["weight"] == 2.0
    assert controls["number_cap"] == "2/1d"
    assert controls["redial"] == {
        "on": ["busy", "no-answer"],
        "redials": 2,
        "interval_seconds": 900.0,
        "backoff": "linear",
    }


def test_given_json_rows_when_posted_then_they_are_read_by_the_same_rules(
    api: httpx.Client, ledger: Ledger
) -> None:
    rows: list[dict[str, Any]] = [
        {"From": AGENT, "To": "09876500001", "CustomField": "o-1", "TimeLimit": 600},
        {"From": AGENT, "To": 9876500002, "CustomField": "o-2"},
        {"From": AGENT, "To": "12345", "CustomField": "o-3"},
    ]
    resp = api.post("/v1/campaigns/api-json/calls", json=rows)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"] == ["line 3: To: '12345' is not a valid phone number (too short)"]
    # An object: the rows and the controls together.
    resp = api.post(
        "/v1/campaigns/api-json2/calls",
        json={"rows": rows[:2], "priority": True, "redial_on": ["busy"], "redials": 1},
    )
    assert resp.status_code == 200, resp.text
    controls = api.get("/v1/campaigns/api-json2?details=true").json()["controls"]
    assert controls["priority"] is True and controls["redial"]["on"] == ["busy"]
    assert {r["to"] for r in ledger.iter_records("api-json")} == {"+919876500001", "+919876500002"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "25:00-26:00"}, "window"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"end_at": "2030-01-01T10:00"}, "end_at"),
        ({"redials": "eleven"}, "redials"),
        ({"redials": "11"}, "redials"),
        ({"weight": "1000"}, "weight"),
        ({"number_cap": "2/1w"}, "number_cap"),
        ({"redial_on": "engaged"}, "redial_on"),
        ({"dedupe": "none"}, "dedupe"),
        ({"strict": "maybe"}, "strict"),
        ({"account": "north"}, "account"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"sendAt": "2030-01-01T10:00+05:30"}, "sendAt"),
        ({"send_at": "2030-01-02T10:00+05:30", "end_at": "2030-01-01T10:00+05:30"}, "end_at"),
    ],
)
def test_given_a_bad_control_when_posted_then_422_names_it_and_nothing_is_written(
    api: httpx.Client, ledger: Ledger, params: dict[str, str], field: str
) -> None:
    resp = post_csv(api, "api-bad", agent_file(2, bad=False), **params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    assert resp.json()["error"].startswith(field)
    assert ledger.status("api-bad").total == 0
    assert not ledger.meta("api-bad")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"From": AGENT}, "rows"),  # an object without rows
        ([{"From": AGENT, "To": {"n": 1}}], "rows[0].To"),
        ([{"From": AGENT, "To": "09876500001"}, 7], "rows[1]"),
        ({"rows": "From,To"}, "rows"),
        ({"rows": [], "redials": "x"}, "redials"),
        ({"rows": [], "colour": "red"}, "colour"),
        ([], "rows"),  # nothing to enqueue
    ],
)
def test_given_bad_json_rows_when_posted_then_422_names_the_field(
    api: httpx.Client, body: Any, field: str
) -> None:
    resp = api.post("/v1/campaigns/api-badjson/calls", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


def test_given_unreadable_or_unusable_bodies_when_posted_then_4xx_never_5xx(
    api: httpx.Client,
) -> None:
    url = "/v1/campaigns/api-junk/calls"
    resp = api.post(url, content=b"[{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    resp = api.post(url, content=b"From,To\n", headers={"Content-Type": "application/xml"})
    assert resp.status_code == 415
    # A file no row of which can be dialled (no From column): 422, as the CLI exits 1.
    resp = post_csv(api, "api-junk", b"Name,Phone\nA,09876500001\n")
    assert resp.status_code == 422 and resp.json()["field"] == "rows"
    assert "From" in resp.json()["error"]
    # strict: one bad row, nothing enqueued.
    resp = post_csv(api, "api-junk", agent_file(2), strict="true")
    assert resp.status_code == 422 and resp.json()["accepted"] == 0
    assert resp.json()["rejected"] == 2
    resp = api.post(url, files={"other": ("a.csv", b"x", "text/csv")})
    assert resp.status_code == 422 and resp.json()["field"] == "other"
    resp = api.post(url, data={"window": "always"}, files={"f": ("", b"", "text/csv")})
    assert resp.status_code == 422
    boundary = "multipart/form-data; boundary=zz"
    resp = api.post(url, content=b"--zz\r\ngarbage", headers={"Content-Type": boundary})
    assert resp.status_code in (400, 422)
    resp = api.post("/v1/campaigns/-bad-id/calls", json=[])
    assert resp.status_code == 422 and resp.json()["field"] == "id"


def test_given_a_cancelled_campaign_when_posted_then_409_and_nothing_is_added(
    api: httpx.Client,
) -> None:
    assert post_csv(api, "api-gone", agent_file(2, bad=False)).status_code == 200
    assert api.post("/v1/campaigns/api-gone/cancel").json() == {
        "campaign": "api-gone",
        "cancelled": 2,
    }
    resp = post_csv(api, "api-gone", agent_file(4, bad=False))
    assert resp.status_code == 409 and resp.json()["refused"] == 4


def test_given_a_body_over_the_limit_when_posted_then_413_before_reading_it_all(
    redis_url: str, prefix: str, ledger: Ledger
) -> None:
    settings = make_settings(
        redis_url=redis_url, key_prefix=prefix, api_token=TOKEN, api_max_body_bytes=2048
    )
    big = agent_file(100, bad=False)
    assert len(big) > 2048
    server = serve(settings)
    with server, httpx.Client(base_url=server.base, headers=AUTH, timeout=30) as client:  # type: ignore[attr-defined]
        resp = post_csv(client, "api-big", big)
        assert resp.status_code == 413 and "API_MAX_BODY_BYTES" in resp.json()["error"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            for i in range(0, len(big), 512):
                yield big[i : i + 512]

        resp = client.post(
            "/v1/campaigns/api-big/calls",
            content=chunked(),
            headers={"Content-Type": "text/csv"},
        )
        assert resp.status_code == 413
        files = {"file": ("calls.csv", big, "text/csv")}
        assert client.post("/v1/campaigns/api-big/calls", files=files).status_code == 413
        resp = client.post("/v1/campaigns/api-big/calls", json=[{"From": AGENT}] * 200)
        assert resp.status_code == 413
        assert post_csv(client, "api-big", agent_file(5, bad=False)).status_code == 200
    assert ledger.status("api-big").total == 5


# --- auth ----------------------------------------------------------------------------------


def test_given_no_or_a_wrong_token_when_called_then_401_and_the_token_is_never_logged(
    api_settings: Settings, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(api_settings)
    with server, httpx.Client(base_url=server.base, timeout=30) as client:  # type: ignore[attr-defined]
        data = agent_file(2, bad=False)
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-000000"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": "Bearer"},
        ):
            resp = client.post(
                "/v1/campaigns/api-auth/calls",
                content=data,
                headers={**headers, "Content-Type": "text/csv"},
            )
            assert resp.status_code == 401, headers
            assert resp.headers["www-authenticate"] == "Bearer"
            assert client.get("/v1/campaigns", headers=headers).status_code == 401
        assert ledger.status("api-auth").total == 0
        # Both tokens of a rotation are good.
        for token in (TOKEN, OLD_TOKEN):
            resp = client.post(
                "/v1/campaigns/api-auth/calls",
                content=data,
                headers={"Authorization": f"bearer {token}", "Content-Type": "text/csv"},
            )
            assert resp.status_code == 200
        # Unauthenticated: the document and the probes only.
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/healthz").json() == {"ok": True}
        assert client.get("/livez").status_code == 200
    assert TOKEN not in caplog.text and OLD_TOKEN not in caplog.text


def test_given_no_api_token_when_the_app_is_built_then_it_refuses_naming_the_variable(
    redis_url: str,
) -> None:
    with pytest.raises(ConfigError, match="API_TOKEN is not set"):
        create_app(make_settings(redis_url=redis_url))
    with pytest.raises(ConfigError, match="shorter than 16"):
        create_app(make_settings(redis_url=redis_url, api_token=f"{TOKEN},short"))
    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_app(make_settings(api_token=TOKEN))


# --- status, controls, report --------------------------------------------------------------


def test_given_a_campaign_when_its_status_is_read_then_it_is_status_json_held_included(
    api: httpx.Client, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # A window that is closed now, so that `held` says why the calls wait.
    resp = post_csv(api, "api-status", agent_file(4, bad=False), window="03:00-03:01")
    assert resp.status_code == 200
    status = api.get("/v1/campaigns/api-status")
    rc, out = run_cli(capsys, "status", "api-status", "--json")
    assert rc == 0 and status.json() == json.loads(out)
    assert status.json()["held"]["reason"] == "window"
    details = api.get("/v1/campaigns/api-status", params={"details": "true"}).json()
    rc, out = run_cli(capsys, "status", "api-status", "--json", "--details")
    assert details == json.loads(out)
    assert api.get("/v1/campaigns/api-status", params={"details": "perhaps"}).status_code == 422
    assert api.get("/v1/campaigns/api-status", params={"verbose": "1"}).status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/report"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
        ("PATCH", ""),
    ],
)
def test_given_an_unknown_campaign_when_called_then_404(
    api: httpx.Client, ledger: Ledger, method: str, path: str
) -> None:
    kw: dict[str, Any] = {"json": {"window": "always"}} if method == "PATCH" else {}
    resp = api.request(method, f"/v1/campaigns/api-nobody{path}", **kw)
    assert resp.status_code == 404 and resp.json()["field"] == "id"
    assert not ledger.meta("api-nobody")


def test_given_a_campaign_when_paused_resumed_set_and_cancelled_then_each_acts_as_the_cli(
    api: httpx.Client,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
) -> None:
    assert post_csv(api, "api-ctl", agent_file(5, bad=False)).status_code == 200
    assert api.post("/v1/campaigns/api-ctl/pause").json() == {
        "campaign": "api-ctl",
        "paused": True,
    }
    assert ledger.meta("api-ctl")["paused"] == "1"
    held = api.get("/v1/campaigns/api-ctl").json()["held"]
    assert held["reason"] == "paused" and held["count"] == 5
    resumed = api.post("/v1/campaigns/api-ctl/resume").json()
    assert resumed["paused"] is False and resumed["parked"] == 5
    patch = {
        "window": "09:00-21:00",
        "end_at": "2030-11-24T21:00+05:30",
        "weight": 3,
        "number_cap": "1/6h",
    }
    resp = api.patch("/v1/campaigns/api-ctl", json=patch)
    assert resp.status_code == 200, resp.text
    rc, out = run_cli(capsys, "set", "api-ctl")  # no option: prints the controls
    assert rc == 0 and resp.json() == json.loads(out)
    assert resp.json()["window"] == "09:00-21:00" and resp.json()["weight"] == 3.0
    assert resp.json()["number_cap"] == "1/6h"
    bad = api.patch("/v1/campaigns/api-ctl", json={"redials": 99})
    assert bad.status_code == 422 and bad.json()["field"] == "redials"
    bad = api.patch("/v1/campaigns/api-ctl", json={"priority": True})  # not a control of set
    assert bad.status_code == 422 and bad.json()["field"] == "priority"
    bad = api.patch("/v1/campaigns/api-ctl", content=b"window=always")
    assert bad.status_code == 415
    assert api.post("/v1/campaigns/api-ctl/cancel").json()["cancelled"] == 5
    assert ledger.status("api-ctl").states["cancelled"] == 5


def test_given_a_campaign_when_its_report_is_streamed_then_it_is_the_clis_report(
    api: httpx.Client,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    n = 1500  # several chunks of the stream
    assert post_csv(api, "api-report", agent_file(n, bad=False)).json()["accepted"] == n
    for fmt in ("csv", "jsonl"):
        for attempts in ("false", "true"):
            with api.stream(
                "GET",
                "/v1/campaigns/api-report/report",
                params={"format": fmt, "attempts": attempts},
            ) as resp:
                assert resp.status_code == 200
                assert "content-length" not in resp.headers  # streamed, not built whole
                assert resp.headers["transfer-encoding"] == "chunked"
                text = b"".join(resp.iter_bytes()).decode()
            argv = ["report", "api-report", "--format", fmt]
            rc, out = run_cli(capsys, *argv, *(["--attempts"] if attempts == "true" else []))
            assert rc == 0 and text == out
    lines = api.get("/v1/campaigns/api-report/report").text.splitlines()
    assert len(lines) == n + 1 and lines[0].startswith('"request_id","From","To","state"')
    bad = api.get("/v1/campaigns/api-report/report", params={"format": "xlsx"})
    assert bad.status_code == 422 and bad.json()["field"] == "format"


# --- the list ------------------------------------------------------------------------------


def test_given_campaigns_when_listed_then_pages_follow_next_and_the_index_heals(
    api: httpx.Client, ledger: Ledger
) -> None:
    names = [f"api-list-{i:02d}" for i in range(7)] + ["other-1"]
    for i, name in enumerate(names):
        assert post_csv(api, name, agent_file(i + 1, bad=False)).status_code == 200

    def walk(**params: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = {**params, **({"after": after} if after else {})}
            page = api.get("/v1/campaigns", params=query).json()
            assert len(page["campaigns"]) <= int(params.get("limit", 50))
            seen += page["campaigns"]
            after = page["next"]
            if after is None:
                return seen

    listed = walk(limit=3)
    assert [c["campaign"] for c in listed] == sorted(names)
    assert [c["total"] for c in listed if c["campaign"] == "api-list-03"] == [4]
    assert listed[0]["states"]["queued"] == 1 and "held" not in listed[0]
    assert [c["campaign"] for c in walk(limit=2, prefix="api-list-")] == names[:7]
    # A ledger from before the index (the set only): the list indexes it again.
    ledger.redis.delete(ledger.keys.campaigns_by_id())
    assert [c["campaign"] for c in walk(limit=500)] == sorted(names)
    for params in ({"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"after": "-x"}):
        resp = api.get("/v1/campaigns", params=params)
        assert resp.status_code == 422 and resp.json()["field"] == next(iter(params))


# --- fuzzing -------------------------------------------------------------------------------


@pytest.fixture
def asgi(api_settings: Settings) -> Iterator[AsgiClient]:
    c = AsgiClient(create_app(api_settings))
    yield c
    c.close()


cells = st.none() | st.text(max_size=20) | st.integers() | st.floats() | st.booleans()
names = st.sampled_from(["From", "To", "CallerId", "Url", "TimeLimit", "CustomField"]) | st.text(
    max_size=8
)
FUZZ = hsettings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    rows=st.lists(st.dictionaries(names, cells, max_size=6), max_size=4)
    | st.dictionaries(st.text(max_size=8), cells | st.lists(cells, max_size=3), max_size=5),
    query=st.dictionaries(
        st.sampled_from(["window", "send_at", "redials", "weight", "dedupe", "strict", "x"]),
        st.text(max_size=12),
        max_size=3,
    ),
)
def test_given_random_json_and_controls_when_posted_then_never_5xx(
    asgi: AsgiClient, rows: Any, query: dict[str, str]
) -> None:
    resp = asgi.post(
        "/v1/campaigns/api-fuzz/calls",
        params=query,
        content=json.dumps(rows).encode(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert resp.status_code in (200, 400, 409, 413, 422), resp.text
    assert "error" in resp.json() or resp.status_code == 200


@FUZZ
@given(body=st.binary(max_size=400))
def test_given_garbage_csv_when_posted_then_never_5xx(asgi: AsgiClient, body: bytes) -> None:
    resp = asgi.post(
        "/v1/campaigns/api-fuzz/calls",
        content=b"From,To,CallerId\n" + body,
        headers={**AUTH, "Content-Type": "text/csv"},
    )
    assert resp.status_code in (200, 422), resp.text


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_given_the_openapi_document_when_schemathesis_fuzzes_it_then_the_app_conforms(
    api_settings: Settings, mode: GenerationMode
) -> None:
    app = create_app(api_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = list(schema.get_all_operations())
    assert len(operations) == 10
    for result in operations:
        operation = result.ok()
        if mode == GenerationMode.NEGATIVE and operation.path in ("/healthz", "/livez"):
            continue  # nothing to negate: no parameters, no body

        @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            # A schema-valid control may still be refused with its documented 422: the
            # document gives the controls' shapes, the rules (a time zone that exists, a
            # window of real times, end_at after send_at) are the CLI's own.
            # A negative case whose only violations vanish on the way (the token it dropped is
            # put back here; a query key that does not survive serialisation) is a valid
            # request, and a 200 for it is right: schemathesis then reports "schema-violating
            # request accepted" (twice in about 30 runs). So negative mode checks what holds
            # for every request, never a 5xx and an answer that conforms; that bad input is
            # refused with its 4xx is shown case by case by the tests above.
            excluded = [positive_data_acceptance]
            if mode == GenerationMode.NEGATIVE:
                excluded.append(negative_data_rejection)
            case.call_and_validate(headers=AUTH, excluded_checks=excluded)

        check()


# --- the command -------------------------------------------------------------------------


def test_given_no_api_token_when_the_command_starts_then_it_refuses(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "callq.api", "--port", str(free_port())],
        check=False,
        cwd=ROOT,
        env=_child_env(REDIS_URL=redis_url, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "API_TOKEN is not set" in proc.stderr


def test_given_the_command_running_when_a_file_is_posted_then_it_is_enqueued_and_logged_without_the_token(
    tmp_path: Path, redis_url: str, prefix: str, ledger: Ledger
) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    env = _child_env(
        REDIS_URL=redis_url,
        KEY_PREFIX=prefix,
        API_TOKEN=f"{TOKEN},{OLD_TOKEN}",
        EXOTEL_CALLER_ID="08030752400",
        PYTHONPATH=str(ROOT),
    )
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "callq.api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, message=lambda: log.read_text(errors="replace"))
        with httpx.Client(base_url=base, timeout=30) as client:
            files = {"file": ("calls.csv", io.BytesIO(agent_file(3, bad=False)), "text/csv")}
            resp = client.post("/v1/campaigns/api-cmd/calls", files=files, headers=AUTH)
            assert resp.status_code == 200 and resp.json()["accepted"] == 3
            wrong = {"Authorization": f"Bearer {TOKEN[:-1]}"}
            assert client.get("/v1/campaigns/api-cmd", headers=wrong).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log.read_text(errors="replace")
    assert "enqueue campaign=api-cmd accepted=3" in text and "401" in text
    assert TOKEN not in text and TOKEN[:-1] not in text and OLD_TOKEN not in text
    assert ledger.status("api-cmd").total == 3
    assert os.environ.get("API_TOKEN") is None
