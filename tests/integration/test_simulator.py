"""The Exotel simulator over real HTTP on loopback: reply shapes, auth, validation, the strict
sliding window, scripted faults, Call Details, StatusCallbacks, and the latency profile.

No Redis is needed. Everything runs with a small ``time_scale`` so the file stays fast.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import defusedxml.ElementTree as SafeET
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
# An editable install made before simulator/__init__.py existed maps `simulator` to a bare
# namespace package; put the repository first so its real package is the one imported.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from simulator import (  # noqa: E402
    Account,
    SimConfig,
    Simulator,
    latency_mean,
    sample_latency,
)

SID, KEY, TOKEN = "acct-test", "key-test", "token-test"
AUTH = (KEY, TOKEN)
IST = ZoneInfo("Asia/Kolkata")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SID_RE = re.compile(r"^[0-9a-f]{32}$")
JSON_TYPE = "application/json"

# Field order of the Call object in Exotel's samples (seed 002 and the connect-to-flow seed).
CALL_FIELDS = [
    "Sid",
    "ParentCallSid",
    "DateCreated",
    "DateUpdated",
    "AccountSid",
    "To",
    "From",
    "PhoneNumberSid",
    "Status",
    "StartTime",
    "EndTime",
    "Duration",
    "Price",
    "Direction",
    "AnsweredBy",
    "ForwardedFrom",
    "CallerName",
    "Uri",
    "RecordingUrl",
]
TERMINAL_FIELDS = {
    "CallSid",
    "EventType",
    "DateCreated",
    "DateUpdated",
    "Status",
    "To",
    "From",
    "PhoneNumberSid",
    "StartTime",
    "EndTime",
    "Direction",
    "RecordingUrl",
    "ConversationDuration",
    "Legs",
}


def make_config(**kw: Any) -> SimConfig:
    rate_limit = kw.pop("rate_limit", 1000)
    period = kw.pop("period", 60.0)
    base: dict[str, Any] = {
        "accounts": [Account(SID, KEY, TOKEN, rate_limit=rate_limit, period=period)],
        "time_scale": 0.01,
        "latency": False,
        "seed": 1234,
    }
    base.update(kw)
    return SimConfig(**base)


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def start(**kw: Any) -> Simulator:
        sim = Simulator(make_config(**kw)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def exo(start_sim: Callable[..., Simulator]) -> Simulator:
    return start_sim()


def connect_url(sim: Simulator, *, as_json: bool = True, sid: str = SID) -> str:
    return f"{sim.url}/v1/Accounts/{sid}/Calls/connect{'.json' if as_json else ''}"


def call_params(**kw: str) -> dict[str, str]:
    params = {"From": "09000000001", "To": "09000000002", "CallerId": "08030752400"}
    params.update(kw)
    return {k: v for k, v in params.items() if v != ""}


def get(url: str, **kw: Any) -> requests.Response:
    return requests.get(url, timeout=kw.pop("timeout", 5.0), **kw)


def post(url: str, **kw: Any) -> requests.Response:
    return requests.post(url, timeout=kw.pop("timeout", 5.0), **kw)


def connect(
    sim: Simulator,
    *,
    as_json: bool = True,
    timeout: Any = 5.0,
    extra: dict[str, str] | None = None,
    **kw: str,
) -> requests.Response:
    data = {k: v for k, v in {**call_params(**kw), **(extra or {})}.items() if v != ""}
    return post(connect_url(sim, as_json=as_json), data=data, auth=AUTH, timeout=timeout)


def list_calls(sim: Simulator, **params: str) -> dict[str, Any]:
    reply = get(f"{sim.url}/v1/Accounts/{SID}/Calls.json", params=params, auth=AUTH)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def xml_text(content: bytes, path: str) -> str | None:
    element = SafeET.fromstring(content).find(path)
    assert element is not None, path
    return element.text


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def ist_now(delta: float = 0.0) -> str:
    return (datetime.now(IST) + timedelta(seconds=delta)).strftime("%Y-%m-%d %H:%M:%S")


# --- a tiny StatusCallback receiver --------------------------------------------------------------


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies to give, then 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    lock = threading.Lock()
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                rec = box["r"]
                rec.got.append(Received(self.path, self.headers.get("Content-Type", ""), body))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/cb?token=t")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()


def parse_multipart(content_type: str, body: bytes) -> dict[str, str]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    assert message.is_multipart()
    form: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        payload = part.get_payload(decode=True)
        form[name] = payload.decode() if isinstance(payload, bytes) else ""
    return form


# --- reply shapes --------------------------------------------------------------------------------


def test_given_valid_request_when_connect_without_json_then_xml_reply_has_seed_shape(
    exo: Simulator,
) -> None:
    reply = connect(exo, as_json=False, CustomField="req-1")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert reply.text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = SafeET.fromstring(reply.content)
    assert root.tag == "TwilioResponse"
    (call,) = list(root)
    assert call.tag == "Call"
    assert [child.tag for child in call] == CALL_FIELDS
    text = {child.tag: (child.text or "") for child in call}
    assert SID_RE.match(text["Sid"])
    assert text["Status"] == "in-progress"
    assert text["Direction"] == "outbound-api"
    assert text["AccountSid"] == SID
    assert (text["From"], text["To"], text["PhoneNumberSid"]) == (
        "09000000001",
        "09000000002",
        "08030752400",
    )
    assert TIME_RE.match(text["DateCreated"]) and TIME_RE.match(text["StartTime"])
    assert text["EndTime"] == text["Duration"] == text["ParentCallSid"] == ""
    assert text["Uri"] == f"/v1/Accounts/{SID}/Calls/{text['Sid']}"


def test_given_valid_request_when_connect_json_then_json_reply_has_seed_shape(
    exo: Simulator,
) -> None:
    reply = connect(exo)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert list(body) == ["Call"]
    call = body["Call"]
    assert list(call) == CALL_FIELDS
    assert SID_RE.match(call["Sid"])
    assert call["Status"] == "in-progress"
    assert call["EndTime"] is None and call["Duration"] is None and call["Price"] is None
    assert call["ParentCallSid"] is None and call["RecordingUrl"] is None
    assert call["Uri"] == f"/v1/Accounts/{SID}/Calls.json/{call['Sid']}"
    # DateCreated is IST wall-clock time, with no zone.
    created = datetime.strptime(call["DateCreated"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    assert abs((datetime.now(IST) - created).total_seconds()) < 5


def test_given_flow_url_when_connect_then_to_shows_the_exophone(exo: Simulator) -> None:
    url = f"http://my.exotel.com/{SID}/exoml/start_voice/926"
    reply = connect(exo, To="", Url=url)
    assert reply.status_code == 200, reply.text
    assert reply.json()["Call"]["To"] == "08030752400"


def test_given_keep_alive_connection_when_three_requests_then_all_served_on_one_socket(
    exo: Simulator,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", exo.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/_sim/health")
            reply = conn.getresponse()
            assert reply.status == 200
            assert json.loads(reply.read()) == {"ok": True}
            assert reply.getheader("Connection") != "close"
    finally:
        conn.close()


# --- auth and validation -------------------------------------------------------------------------


def test_given_wrong_token_when_connect_then_401_rest_exception_and_nothing_counted(
    exo: Simulator,
) -> None:
    reply = post(connect_url(exo), data=call_params(), auth=(KEY, "wrong"), timeout=5)
    assert reply.status_code == 401
    assert reply.json()["RestException"]["Status"] == 401
    no_auth = post(connect_url(exo, as_json=False), data=call_params(), timeout=5)
    assert no_auth.status_code == 401
    assert xml_text(no_auth.content, "RestException/Status") == "401"
    truth = exo.truth()
    assert truth["requests"] == 0 and truth["originated"] == 0


def test_given_unknown_account_sid_when_connect_then_404(exo: Simulator) -> None:
    reply = post(connect_url(exo, sid="nobody"), data=call_params(), auth=AUTH)
    assert reply.status_code == 404
    assert reply.json()["RestException"]["Status"] == 404


def test_given_missing_from_when_connect_then_400_with_exotels_message(exo: Simulator) -> None:
    reply = connect(exo, as_json=False, From="")
    assert reply.status_code == 400
    assert SafeET.fromstring(reply.content).tag == "TwilioResponse"
    assert xml_text(reply.content, "RestException/Status") == "400"
    assert xml_text(reply.content, "RestException/Message") == (
        "Invalid Call Parameters: No 'From' specified"
    )
    assert exo.truth()["originated"] == 0


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"CallerId": ""}, "No 'CallerId' specified"),
        ({"To": ""}, "No 'To' or 'Url' specified"),
        ({"Url": "http://my.exotel.com/x/exoml/start_voice/1"}, "Both 'To' and 'Url'"),
        ({"TimeLimit": "14401"}, "TimeLimit"),
        ({"TimeOut": "61"}, "TimeOut"),
        ({"TimeOut": "soon"}, "TimeOut"),
    ],
)
def test_given_bad_parameters_when_connect_then_400_and_not_placed(
    exo: Simulator, changes: dict[str, str], needle: str
) -> None:
    reply = connect(exo, extra=changes)
    assert reply.status_code == 400
    assert needle in reply.json()["RestException"]["Message"]
    assert exo.truth()["originated"] == 0


def test_given_bounds_at_the_limit_when_connect_then_placed(exo: Simulator) -> None:
    assert connect(exo, TimeLimit="14400", TimeOut="60").status_code == 200


# --- the strict sliding window -------------------------------------------------------------------


def test_given_limit_5_per_second_when_6_quick_requests_then_exactly_one_429(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(rate_limit=5, period=1.0)
    codes = [connect(sim).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    truth = sim.truth()
    assert truth["originated"] == 5
    assert truth["rate_limited"] == 1
    assert truth["requests"] == 6
    # Strictest reading: the refused arrival counts too, so the window held 6 arrivals.
    assert truth["max_in_window"] == {SID: 6}
    assert truth["limit"] == {SID: [5, 1.0]}
    time.sleep(1.05)  # every arrival, the 429'd one included, has left the window
    assert connect(sim).status_code == 200


def test_given_429_when_connect_then_rest_exception_body(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(rate_limit=1, period=30.0)
    assert connect(sim).status_code == 200
    reply = connect(sim, as_json=False)
    assert reply.status_code == 429
    assert xml_text(reply.content, "RestException/Status") == "429"


def test_given_call_details_lookups_when_budget_spent_then_connect_gets_429(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(rate_limit=3, period=30.0)
    sid = connect(sim).json()["Call"]["Sid"]
    assert get(f"{sim.url}/v1/Accounts/{SID}/Calls/{sid}.json", auth=AUTH).ok
    assert get(f"{sim.url}/v1/Accounts/{SID}/Calls.json", auth=AUTH).ok
    assert connect(sim).status_code == 429
    truth = sim.truth()
    assert (truth["requests"], truth["details_requests"], truth["originated"]) == (2, 2, 1)
    assert truth["max_in_window"][SID] == 4


# --- faults --------------------------------------------------------------------------------------


def test_given_scripted_500_504_ok_when_three_requests_then_only_the_last_is_placed(
    exo: Simulator,
) -> None:
    exo.script("req-7", ["500", "504", "ok"])
    first = connect(exo, CustomField="req-7")
    second = connect(exo, CustomField="req-7", as_json=False)
    third = connect(exo, CustomField="req-7")
    fourth = connect(exo, CustomField="req-7")  # script used up: normal behaviour
    assert first.status_code == 500
    assert first.json()["RestException"]["Status"] == 500
    assert second.status_code == 504
    assert xml_text(second.content, "RestException/Status") == "504"
    assert (third.status_code, fourth.status_code) == (200, 200)
    truth = exo.truth()
    assert truth["originated"] == 2
    assert truth["by_custom_field"] == {"req-7": 2}
    assert truth["faults"]["500"] == 1 and truth["faults"]["504"] == 1


def test_given_script_keyed_by_to_when_connect_then_fault_applies_to_that_number(
    exo: Simulator,
) -> None:
    post(f"{exo.url}/_sim/script", json={"key": "09999999999", "faults": ["429"]})
    assert connect(exo, To="09999999999").status_code == 429
    assert connect(exo, To="09888888888").status_code == 200
    truth = exo.truth()
    assert truth["faults"]["429"] == 1 and truth["originated"] == 1
    assert truth["by_to"] == {"09888888888": 1}


def test_given_slow_placed_when_client_read_times_out_then_call_was_placed(
    exo: Simulator,
) -> None:
    exo.configure(slow_seconds=1.0)
    exo.script("req-slow", ["slow_placed"])
    with pytest.raises(requests.exceptions.ReadTimeout):
        connect(exo, CustomField="req-slow", timeout=(2.0, 0.2))
    truth = exo.truth()
    assert truth["originated"] == 1
    assert truth["by_custom_field"] == {"req-slow": 1}
    assert truth["faults"]["slow_placed"] == 1
    assert truth["calls"][0]["fault"] == "slow_placed"


def test_given_slow_placed_when_client_waits_then_200_arrives_late(exo: Simulator) -> None:
    exo.configure(slow_seconds=0.3)
    exo.script("req-slow2", ["slow_placed"])
    started = time.monotonic()
    reply = connect(exo, CustomField="req-slow2")
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_given_reset_before_when_connect_then_connection_error_and_not_placed(
    exo: Simulator,
) -> None:
    exo.script("req-rb", ["reset_before"])
    with pytest.raises(requests.exceptions.ConnectionError):
        connect(exo, CustomField="req-rb")
    truth = exo.truth()
    assert truth["originated"] == 0
    assert truth["faults"]["reset_before"] == 1
    assert connect(exo, CustomField="req-rb").status_code == 200  # the server lives on


def test_given_reset_after_when_connect_then_connection_error_but_call_placed(
    exo: Simulator,
) -> None:
    exo.script("req-ra", ["reset_after"])
    with pytest.raises(requests.exceptions.ConnectionError):
        connect(exo, CustomField="req-ra")
    truth = exo.truth()
    assert truth["originated"] == 1
    assert truth["by_custom_field"] == {"req-ra": 1}
    assert truth["faults"]["reset_after"] == 1


def test_given_proxy_504_when_connect_then_an_html_gateway_timeout_but_call_placed(
    exo: Simulator,
) -> None:
    # A proxy or load balancer in front of Exotel gives up while Exotel goes on originating.
    exo.script("req-p504", ["proxy_504"])
    reply = connect(exo, CustomField="req-p504")
    assert reply.status_code == 504
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"RestException" not in reply.content and b"504 Gateway Time-out" in reply.content
    truth = exo.truth()
    assert truth["by_custom_field"] == {"req-p504": 1}
    assert truth["faults"]["proxy_504"] == 1


def test_given_reset_fault_when_raw_socket_reads_then_peer_sees_rst_not_fin(
    exo: Simulator,
) -> None:
    exo.script("req-rst", ["reset_before"])
    body = "From=09000000001&To=09000000002&CallerId=0800&CustomField=req-rst"
    request = (
        f"POST /v1/Accounts/{SID}/Calls/connect.json HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Basic a2V5LXRlc3Q6dG9rZW4tdGVzdA==\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection(("127.0.0.1", exo.port), timeout=5) as sock:
        sock.sendall(request.encode())
        with pytest.raises(ConnectionResetError):
            while sock.recv(4096):
                pass


def test_given_random_fault_probabilities_when_many_requests_then_counts_add_up(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(p_500=0.3, p_504=0.2, seed=99)
    codes = [connect(sim).status_code for _ in range(60)]
    truth = sim.truth()
    assert codes.count(500) == truth["faults"]["500"] > 0
    assert codes.count(504) == truth["faults"]["504"] > 0
    assert codes.count(200) == truth["originated"] == 60 - codes.count(500) - codes.count(504)


# --- Call Details --------------------------------------------------------------------------------


def test_given_one_ended_and_one_ongoing_call_when_listing_then_only_the_ended_one_shows(
    exo: Simulator,
) -> None:
    exo.configure(status_mix={"completed": 1.0}, ring_seconds=[1, 1], talk_seconds=[1, 1])
    short = connect(exo, To="09111111111").json()["Call"]["Sid"]  # lives 0.02 s
    exo.configure(ring_seconds=[1000, 1000])
    long = connect(exo, To="09222222222").json()["Call"]["Sid"]  # lives 10 s
    time.sleep(0.2)
    listed = list_calls(exo)
    assert [c["Sid"] for c in listed["Calls"]] == [short]
    assert listed["Metadata"]["Total"] == 1
    ended = listed["Calls"][0]
    assert list(ended) == CALL_FIELDS
    assert ended["Status"] == "completed" and TIME_RE.match(ended["EndTime"])
    one = get(f"{exo.url}/v1/Accounts/{SID}/Calls/{long}.json", auth=AUTH).json()
    assert one["Call"]["Status"] == "in-progress" and one["Call"]["EndTime"] is None
    truth = {c["sid"]: c for c in exo.truth()["calls"]}
    assert truth[short]["ended"] is True and truth[long]["ended"] is False


def test_given_ended_calls_when_filtering_by_to_and_date_created_then_matches_only(
    exo: Simulator,
) -> None:
    for to in ("09111111111", "09222222222", "09333333333"):
        assert connect(exo, To=to).status_code == 200
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    by_to = list_calls(exo, To="09111111111,09333333333")
    assert sorted(c["To"] for c in by_to["Calls"]) == ["09111111111", "09333333333"]
    window = f"gte:{ist_now(-60)};lte:{ist_now(60)}"
    assert list_calls(exo, DateCreated=window)["Metadata"]["Total"] == 3
    future = f"gte:{ist_now(3600)};lte:{ist_now(7200)}"
    assert list_calls(exo, DateCreated=future)["Calls"] == []
    past = f"gte:{ist_now(-7200)};lte:{ist_now(-3600)}"
    assert list_calls(exo, DateCreated=past, To="09111111111")["Calls"] == []


def test_given_bad_filters_when_listing_then_400(exo: Simulator) -> None:
    url = f"{exo.url}/v1/Accounts/{SID}/Calls.json"
    for params in (
        {"To": "1,2,3,4,5,6"},
        {"PageSize": "101"},
        {"DateCreated": "gte:yesterday"},
        {"SortBy": "Price:asc"},
        {"After": "!!!"},
    ):
        reply = get(url, params=params, auth=AUTH)
        assert reply.status_code == 400, params
        assert reply.json()["RestException"]["Status"] == 400


def test_given_five_ended_calls_when_paging_by_two_then_cursors_walk_all_in_order(
    exo: Simulator,
) -> None:
    sids = [connect(exo).json()["Call"]["Sid"] for _ in range(5)]
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    page = list_calls(exo, PageSize="2", SortBy="DateCreated:asc")
    assert page["Metadata"]["PrevPageUri"] is None
    seen = [c["Sid"] for c in page["Calls"]]
    pages = [page]
    while page["Metadata"]["NextPageUri"]:
        reply = get(exo.url + page["Metadata"]["NextPageUri"], auth=AUTH)
        page = reply.json()
        pages.append(page)
        seen += [c["Sid"] for c in page["Calls"]]
    assert seen == sids
    assert [len(p["Calls"]) for p in pages] == [2, 2, 1]
    assert all(p["Metadata"]["Total"] == 5 and p["Metadata"]["PageSize"] == 2 for p in pages)
    back = get(exo.url + pages[1]["Metadata"]["PrevPageUri"], auth=AUTH).json()
    assert [c["Sid"] for c in back["Calls"]] == sids[:2]
    newest_first = list_calls(exo, PageSize="100")
    assert [c["Sid"] for c in newest_first["Calls"]] == sids[::-1]


def test_given_ended_call_when_get_details_then_json_details_and_xml_shapes(
    exo: Simulator,
) -> None:
    exo.configure(status_mix={"completed": 1.0})
    sid = connect(exo).json()["Call"]["Sid"]
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    base = f"{exo.url}/v1/Accounts/{SID}/Calls/{sid}"
    call = get(f"{base}.json", params={"details": "true"}, auth=AUTH).json()["Call"]
    assert call["Status"] == "completed" and int(call["Duration"]) > 0
    details = call["Details"]
    assert details["Leg1Status"] == details["Leg2Status"] == "completed"
    assert [leg["Leg"]["Id"] for leg in details["Legs"]] == [1, 2]
    assert details["ConversationDuration"] == details["Legs"][1]["Leg"]["OnCallDuration"]
    reply = get(base, auth=AUTH)
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert [child.tag for child in SafeET.fromstring(reply.content)[0]] == CALL_FIELDS
    assert xml_text(reply.content, "Call/Status") == "completed"


def test_given_two_accounts_when_each_spends_its_budget_then_windows_are_separate() -> None:
    accounts = [
        Account(SID, KEY, TOKEN, rate_limit=1, period=30.0),
        Account("acct-2", "key-2", "token-2", rate_limit=1, period=30.0),
    ]
    with Simulator(make_config(accounts=accounts)) as sim:
        assert connect(sim).status_code == 200
        url2 = connect_url(sim, sid="acct-2")
        assert post(url2, data=call_params(), auth=AUTH).status_code == 401
        assert post(url2, data=call_params(), auth=("key-2", "token-2")).status_code == 200
        assert connect(sim).status_code == 429
        assert sim.truth()["max_in_window"] == {SID: 2, "acct-2": 1}


def test_given_a_page_size_cap_when_listing_then_pages_are_no_larger_and_cursors_still_work(
    exo: Simulator,
) -> None:
    exo.configure(max_page_size=2)
    sids = [connect(exo).json()["Call"]["Sid"] for _ in range(3)]
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    page = list_calls(exo, PageSize="100", SortBy="DateCreated:asc")
    assert [c["Sid"] for c in page["Calls"]] == sids[:2]
    assert page["Metadata"]["PageSize"] == 2
    rest = get(exo.url + page["Metadata"]["NextPageUri"], auth=AUTH).json()
    assert [c["Sid"] for c in rest["Calls"]] == sids[2:]
    with pytest.raises(ValueError, match="max_page_size"):
        exo.configure(max_page_size=0)


def test_given_inbound_and_foreign_calls_when_listing_then_they_show_with_their_direction(
    exo: Simulator,
) -> None:
    # Call Details lists every call of the account: the customer calling the ExoPhone back
    # (inbound), or another system's outbound call, besides the calls we placed.
    ours = connect(exo, From="09000000001", To="09000000002").json()["Call"]["Sid"]
    inbound = exo.add_call(from_="09000000001", to="08030752400", direction="inbound")
    foreign = exo.add_call(from_="09000000001", to="09000000003", direction="outbound-api")
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    calls = list_calls(exo, From="09000000001", SortBy="DateCreated:asc")["Calls"]
    assert [(c["Sid"], c["Direction"]) for c in calls] == [
        (ours, "outbound-api"),
        (inbound, "inbound"),
        (foreign, "outbound-api"),
    ]
    assert calls[1]["To"] == "08030752400" and calls[1]["Status"] == "completed"
    only_in = list_calls(exo, Direction="inbound")["Calls"]
    assert [c["Sid"] for c in only_in] == [inbound]
    truth = exo.truth()
    assert truth["originated"] == 1 and [c["sid"] for c in truth["calls"]] == [ours]
    assert [(c["sid"], c["direction"]) for c in truth["injected"]] == [
        (inbound, "inbound"),
        (foreign, "outbound-api"),
    ]
    with pytest.raises(ValueError, match="direction"):
        exo.add_call(from_="09000000001", to="08030752400", direction="sideways")


def test_given_a_call_added_with_a_past_date_when_listing_then_sorted_by_date_created(
    exo: Simulator,
) -> None:
    newer = connect(exo).json()["Call"]["Sid"]
    created = time.time() - 600
    older = exo.add_call(
        from_="09000000001", to="09000000002", direction="outbound-api", created=created
    )
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    page = list_calls(exo, PageSize="1", SortBy="DateCreated:asc")
    assert [c["Sid"] for c in page["Calls"]] == [older]
    shown = datetime.strptime(page["Calls"][0]["DateCreated"], "%Y-%m-%d %H:%M:%S")
    assert abs(shown.replace(tzinfo=IST).timestamp() - created) < 1.0
    rest = get(exo.url + page["Metadata"]["NextPageUri"], auth=AUTH).json()
    assert [c["Sid"] for c in rest["Calls"]] == [newer]
    window = f"gte:{ist_now(-700)};lte:{ist_now(-500)}"
    assert [c["Sid"] for c in list_calls(exo, DateCreated=window)["Calls"]] == [older]


def test_given_a_dst_zone_when_a_call_is_made_in_the_repeated_hour_then_the_filter_is_wall_clock(
    start_sim: Callable[..., Simulator],
) -> None:
    # Exotel's times are plain wall-clock strings, and so is its DateCreated filter: a call
    # made at 01:30 GMT on the night London falls back shows, and is filtered, as "01:30".
    sim = start_sim(timezone="Europe/London")
    second_0130 = datetime(2025, 10, 26, 1, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    sid = sim.add_call(
        from_="09000000001", to="09000000002", direction="outbound-api", created=second_0130
    )
    calls = list_calls(sim, DateCreated="gte:2025-10-26 01:29:00;lte:2025-10-26 01:31:00")
    assert [c["Sid"] for c in calls["Calls"]] == [sid]
    assert calls["Calls"][0]["DateCreated"] == "2025-10-26 01:30:00"


def test_given_the_control_endpoint_when_a_call_is_added_over_http_then_it_is_listed(
    exo: Simulator,
) -> None:
    reply = post(
        f"{exo.url}/_sim/calls",
        json={"From": "09000000001", "To": "08030752400", "Direction": "inbound"},
    )
    assert reply.status_code == 200
    sid = reply.json()["Sid"]
    assert [c["Sid"] for c in list_calls(exo)["Calls"]] == [sid]
    bad = post(f"{exo.url}/_sim/calls", json={"From": "09000000001"})
    assert bad.status_code == 400 and "To" in bad.json()["error"]


def test_given_unknown_call_sid_when_get_details_then_404_rest_exception(exo: Simulator) -> None:
    reply = get(f"{exo.url}/v1/Accounts/{SID}/Calls/{'0' * 32}.json", auth=AUTH)
    assert reply.status_code == 404
    assert reply.json()["RestException"]["Status"] == 404


# --- StatusCallbacks -----------------------------------------------------------------------------


def test_given_json_callback_when_call_ends_then_terminal_payload_is_delivered(
    exo: Simulator, receiver: Receiver
) -> None:
    exo.configure(status_mix={"completed": 1.0})
    sid = connect(
        exo,
        CustomField="req-cb",
        StatusCallback=receiver.url,
        extra={"StatusCallbackEvents[0]": "terminal", "StatusCallbackContentType": JSON_TYPE},
    ).json()["Call"]["Sid"]
    wait_for(lambda: len(receiver.got) == 1)
    got = receiver.got[0]
    assert got.path == "/cb?token=t"
    assert got.content_type == "application/json"
    payload = json.loads(got.body)
    assert set(payload) >= TERMINAL_FIELDS
    assert payload["CallSid"] == sid
    assert payload["EventType"] == "terminal"
    assert payload["Status"] == "completed"
    assert payload["CustomField"] == "req-cb"
    assert payload["Direction"] == "outbound-api"
    assert TIME_RE.match(payload["DateCreated"]) and TIME_RE.match(payload["EndTime"])
    assert payload["ConversationDuration"] > 0
    assert [set(leg) for leg in payload["Legs"]] == [{"Status", "OnCallDuration"}] * 2
    assert payload["Legs"][0]["Status"] == "completed"
    wait_for(lambda: exo.truth()["callbacks"]["sent"] == 1)
    delivery = exo.truth()["callbacks"]["deliveries"][0]
    assert delivery["call_sid"] == sid and delivery["attempts"] == 1


def test_given_a_flow_call_with_a_query_in_its_callback_url_then_it_is_posted_to_exactly_that_url(
    exo: Simulator, receiver: Receiver
) -> None:
    # The dialer's StatusCallback URL holds the token (percent-encoded as it was set), the
    # request id and the attempt: a flow call's callback (no CustomField) is matched by them,
    # so the URL must come back byte for byte, query and all.
    query = "token=a%2Fb%26c%3D&tenant=x&rid=camp-1:ab%2Fcd&attempt=2"
    url = f"{receiver.url.split('?')[0]}?{query}"
    connect(
        exo,
        To="",
        Url="http://my.exotel.com/acct/exoml/start_voice/1",
        CustomField="camp-1:ab/cd",
        StatusCallback=url,
        extra={"StatusCallbackEvents[0]": "terminal"},
    )
    wait_for(lambda: len(receiver.got) == 1)
    (got,) = receiver.got
    assert got.path == f"/cb?{query}"
    assert "CustomField" not in got.body.decode("utf-8", "replace")  # a flow's four fields
    wait_for(lambda: exo.truth()["callbacks"]["sent"] == 1)
    assert exo.truth()["callbacks"]["deliveries"][0]["url"] == url


def test_given_multipart_callback_for_busy_call_then_legs_keys_and_zero_conversation(
    exo: Simulator, receiver: Receiver
) -> None:
    exo.configure(status_mix={"busy": 1.0})
    sid = connect(
        exo,
        CustomField="req-mp",
        StatusCallback=receiver.url,
        extra={
            "StatusCallbackEvents[0]": "terminal",
            "StatusCallbackContentType": "multipart/form-data",
        },
    ).json()["Call"]["Sid"]
    wait_for(lambda: len(receiver.got) == 1)
    got = receiver.got[0]
    assert got.content_type.startswith("multipart/form-data; boundary=")
    form = parse_multipart(got.content_type, got.body)
    assert form["CallSid"] == sid
    assert form["Status"] == "busy"
    assert form["ConversationDuration"] == "0"
    assert form["CustomField"] == "req-mp"
    assert form["Legs[0][Status]"] == "busy"
    assert form["Legs[0][OnCallDuration]"] == "0"
    assert form["Legs[1][Status]"] == ""  # the second leg was never attempted
    assert form["RecordingUrl"] == ""


def test_given_no_events_and_no_content_type_then_four_basic_fields_as_multipart(
    exo: Simulator, receiver: Receiver
) -> None:
    sid = connect(exo, StatusCallback=receiver.url).json()["Call"]["Sid"]
    wait_for(lambda: len(receiver.got) == 1)
    got = receiver.got[0]
    form = parse_multipart(got.content_type, got.body)
    assert set(form) == {"CallSid", "Status", "RecordingUrl", "DateUpdated"}
    assert form["CallSid"] == sid


def test_given_a_flow_call_with_terminal_events_when_it_ends_then_only_the_four_basic_fields(
    exo: Simulator, receiver: Receiver
) -> None:
    # EXOTEL.md: callbacks of calls connected to a flow carry only CallSid, Status,
    # RecordingUrl and DateUpdated (no CustomField), whatever StatusCallbackEvents says.
    url = "http://my.exotel.com/acct/exoml/start_voice/1"
    sid = connect(
        exo,
        To="",
        Url=url,
        CustomField="req-flow",
        StatusCallback=receiver.url,
        extra={"StatusCallbackEvents[0]": "terminal", "StatusCallbackContentType": JSON_TYPE},
    ).json()["Call"]["Sid"]
    wait_for(lambda: len(receiver.got) == 1)
    payload = json.loads(receiver.got[0].body)
    assert set(payload) == {"CallSid", "Status", "RecordingUrl", "DateUpdated"}
    assert payload["CallSid"] == sid
    wait_for(lambda: exo.truth()["callbacks"]["sent"] == 1)
    # The ground truth still knows whose call it was, and that the callback did not say.
    delivery = exo.truth()["callbacks"]["deliveries"][0]
    assert delivery["custom_field"] == "req-flow"
    assert delivery["payload_custom_field"] is None


def test_given_failing_receiver_when_callback_then_retried_until_2xx(
    exo: Simulator, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    connect(
        exo,
        StatusCallback=receiver.url,
        extra={"StatusCallbackEvents[0]": "terminal", "StatusCallbackContentType": JSON_TYPE},
    )
    wait_for(lambda: exo.truth()["callbacks"]["sent"] == 1)
    assert len(receiver.got) == 3
    assert receiver.got[0].body == receiver.got[2].body
    callbacks = exo.truth()["callbacks"]
    assert callbacks["retries"] == 2 and callbacks["failed"] == 0
    assert callbacks["deliveries"][0]["attempts"] == 3
    # Every try is kept (time, status, error or the reply's start), for a run to explain.
    tries = callbacks["deliveries"][0]["tries"]
    assert [t[1:] for t in tries] == [[500, "HTTP 500"], [503, "HTTP 503"], [200, ""]]
    assert tries[0][0] <= tries[1][0] <= tries[2][0]


def test_given_unreachable_receiver_when_callback_then_given_up_after_five_retries(
    exo: Simulator,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    connect(exo, StatusCallback=f"http://127.0.0.1:{dead_port}/cb")
    wait_for(lambda: exo.truth()["callbacks"]["failed"] == 1)
    delivery = exo.truth()["callbacks"]["deliveries"][0]
    assert delivery["attempts"] == 6 and delivery["state"] == "failed"


def test_given_duplicate_probability_one_when_call_ends_then_same_payload_twice(
    exo: Simulator, receiver: Receiver
) -> None:
    exo.configure(p_duplicate_callback=1.0)
    connect(
        exo,
        StatusCallback=receiver.url,
        extra={"StatusCallbackEvents[0]": "terminal", "StatusCallbackContentType": JSON_TYPE},
    )
    wait_for(lambda: len(receiver.got) == 2)
    assert json.loads(receiver.got[0].body) == json.loads(receiver.got[1].body)
    wait_for(lambda: exo.truth()["callbacks"]["sent"] == 2)
    assert exo.truth()["callbacks"]["duplicates"] == 1


def test_given_late_probability_one_when_call_ends_then_callback_is_delayed(
    exo: Simulator, receiver: Receiver
) -> None:
    exo.configure(p_late_callback=1.0, late_callback_seconds=40.0)  # 0.4 s at this scale
    connect(exo, StatusCallback=receiver.url)
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    time.sleep(0.1)
    assert receiver.got == []
    wait_for(lambda: len(receiver.got) == 1)
    assert exo.truth()["callbacks"]["late"] == 1


def test_given_callbacks_disabled_when_call_ends_then_nothing_is_posted(
    exo: Simulator, receiver: Receiver
) -> None:
    exo.configure(callbacks=False)
    connect(exo, StatusCallback=receiver.url)
    wait_for(lambda: all(c["ended"] for c in exo.truth()["calls"]))
    time.sleep(0.1)
    assert receiver.got == []
    assert exo.truth()["callbacks"]["deliveries"] == []


# --- control endpoints and robustness ------------------------------------------------------------


def test_given_control_endpoints_when_used_over_http_then_config_script_reset_work(
    exo: Simulator,
) -> None:
    base = f"{exo.url}/_sim"
    assert post(f"{base}/config", json={"p_500": 1.0}).status_code == 200
    assert connect(exo).status_code == 500
    assert post(f"{base}/config", json={"p_500": 0.0}).status_code == 200
    assert post(f"{base}/config", json={"bogus": 1}).status_code == 400
    assert post(f"{base}/config", json={"p_500": "high"}).status_code == 400
    assert post(f"{base}/config", data=b"{not json").status_code == 400
    assert post(f"{base}/script", json={"key": "k", "faults": ["boom"]}).status_code == 400
    assert connect(exo).status_code == 200
    truth = get(f"{base}/truth").json()
    assert (truth["requests"], truth["originated"], truth["faults"]["500"]) == (2, 1, 1)
    assert post(f"{base}/reset").status_code == 200
    truth = get(f"{base}/truth").json()
    assert (truth["requests"], truth["originated"], truth["calls"]) == (0, 0, [])
    assert get(f"{base}/nothing").status_code == 404
    assert get(f"{exo.url}/v1/Accounts/{SID}/Sms/send", auth=AUTH).status_code == 404
    assert get(f"{exo.url}/elsewhere").status_code == 404


def test_given_garbage_requests_when_sent_then_4xx_and_server_keeps_serving(
    exo: Simulator,
) -> None:
    bad_auth = {"Authorization": "Basic !!!notbase64"}
    assert post(connect_url(exo), headers=bad_auth, data="x").status_code == 401
    with socket.create_connection(("127.0.0.1", exo.port), timeout=5) as sock:
        sock.sendall(b"POST /_sim/reset HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", exo.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01garbage\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):  # answered with an error page, then closed
            reply += chunk
        assert b"400" in reply
    assert connect(exo).status_code == 200


def test_given_a_pending_slow_reply_when_stopped_then_stop_is_prompt(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(slow_seconds=30.0)
    sim.script("req-stuck", ["slow_placed"])
    errors: list[BaseException] = []

    def call() -> None:
        try:
            connect(sim, CustomField="req-stuck", timeout=10)
        except requests.exceptions.RequestException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    wait_for(lambda: sim.truth()["originated"] == 1)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2.0
    worker.join(5)
    assert errors, "the stuck request should have been cut off"


# --- latency -------------------------------------------------------------------------------------


def test_given_20k_latency_samples_then_mean_p95_p99_match_the_seed_within_15_percent() -> None:
    rng = random.Random(2024)
    samples = sorted(sample_latency(rng) for _ in range(20_000))
    mean = sum(samples) / len(samples)
    p95 = samples[int(0.95 * len(samples))]
    p99 = samples[int(0.99 * len(samples))]
    assert mean == pytest.approx(0.48, rel=0.15)
    assert p95 == pytest.approx(1.1, rel=0.15)
    assert p99 == pytest.approx(2.5, rel=0.15)
    assert latency_mean() == pytest.approx(0.48, rel=0.01)
    scaled = sample_latency(random.Random(1), time_scale=0.01)
    assert scaled == pytest.approx(sample_latency(random.Random(1)) * 0.01)


def test_given_latency_on_when_connecting_then_replies_take_scaled_seed_time(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(latency=True, time_scale=0.05)  # mean about 24 ms
    started = time.monotonic()
    for _ in range(10):
        assert connect(sim).status_code == 200
    elapsed = time.monotonic() - started
    assert 10 * 0.12 * 0.05 <= elapsed < 10 * 5.5 * 0.05 + 2.0


# --- command line --------------------------------------------------------------------------------


def test_given_cli_when_started_then_prints_url_serves_and_exits_on_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", "--no-latency", "--rate-limit", "7"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url), url
        truth = get(f"{url}/_sim/truth", timeout=5).json()
        assert truth["limit"] == {"sim-account": [7, 60.0]}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_given_cli_help_then_exit_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "--p-reset-after" in done.stdout and "--time-scale" in done.stdout


def test_given_a_live_call_cap_when_calls_overlap_then_it_refuses_at_the_cap_until_one_ends(
    start_sim: Callable[..., Simulator],
) -> None:
    # Calls of 100 simulated seconds (1 s real), each completed: two-leg calls hold 2 slots.
    sim = start_sim(ring_seconds=(50.0, 50.0), talk_seconds=(50.0, 50.0))
    sim.configure(status_mix={"completed": 1.0}, max_live_slots=5)
    assert connect(sim).status_code == 200  # 2 slots
    assert connect(sim).status_code == 200  # 4
    refused = connect(sim)  # a third connect call would hold 6 > 5
    assert refused.status_code == 429
    body = refused.json()["RestException"]
    assert body["Status"] == 429 and "concurren" in body["Message"]
    url = "http://my.exotel.com/acct/exoml/start_voice/1"
    assert connect(sim, To="", Url=url).status_code == 200  # a flow call's 1 slot: 5 of 5
    truth = sim.truth()
    assert truth["max_live_slots"] == {SID: 5} and truth["live_slots"] == {SID: 5}
    assert truth["live_refused"] == 1 and truth["originated"] == 3
    assert truth["rate_limited"] == 0  # not a rate-limit refusal
    wait_for(lambda: sim.truth()["live_slots"] == {SID: 0}, timeout=3.0)
    assert connect(sim).status_code == 200  # the calls ended: their slots are free


def test_given_a_configured_refusal_when_at_the_cap_then_it_answers_with_it(
    start_sim: Callable[..., Simulator],
) -> None:
    sim = start_sim(ring_seconds=(50.0, 50.0), talk_seconds=(50.0, 50.0))
    sim.configure(max_live_slots=1, live_cap_status=403, live_cap_message="Concurrency limit")
    reply = connect(sim)  # a two-leg call's 2 slots never fit a cap of 1
    assert reply.status_code == 403
    assert reply.json()["RestException"]["Message"] == "Concurrency limit"
    for bad in ({"max_live_slots": 0}, {"max_live_slots": "5"}, {"live_cap_status": 200}):
        with pytest.raises(ValueError):
            sim.configure(**bad)
