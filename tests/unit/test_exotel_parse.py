"""Reading and classifying Exotel's replies (pure functions, no network).

The seed constants are Exotel's own sample replies, copied verbatim from the pages in
/work/shared/seeds/ (named by file and line). Those pages render indentation as no-break
spaces (U+00A0); the copies keep them, which is why this file silences RUF001.
"""
# ruff: noqa: RUF001

from __future__ import annotations

import http.client
import json
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests
import urllib3.exceptions as uexc
from hypothesis import given, settings
from hypothesis import strategies as st

from callq.errors import ExotelReplyError
from callq.exotel.outcome import NotPlaced, Originated, Rejected, Unknown
from callq.exotel.replies import (
    classify_exception,
    classify_response,
    parse_reply,
    parse_retry_after,
)

# Seed 002 (connect two numbers): the JSON success reply.
# 002_6baa2ffd5114fee4.txt, lines 165-187, verbatim (no-break spaces included).
SEED_002_JSON_SUCCESS = """{
  "Call": {
    "Sid": "c5797dcbaaeed7678c4062a4a3ed2f8a",
    "ParentCallSid": null,
    "DateCreated": "2017-03-03 10:48:33",
    "DateUpdated": "2017-03-03 10:48:33",
    "AccountSid": "Exotel",
    "To": "0XXXXX38847",
    "From": "0XXXXX30240",
    "PhoneNumberSid": "0XXXXXX4890",
    "Status": "in-progress",
    "StartTime": "2017-03-03 10:48:33",
    "EndTime": null,
    "Duration": null,
    "Price": null,
    "Direction": "outbound-api",
    "AnsweredBy": null,
    "ForwardedFrom": null,
    "CallerName": null,
    "Uri": "/v1/Accounts/Exotel/Calls.json/c5797dcbaaeed7678c4062a4a3ed2f8a",
    "RecordingUrl": null
  }
}""".encode()

# Seed 002 (connect two numbers): the XML success reply.
# 002_6baa2ffd5114fee4.txt, lines 189-212, verbatim (no-break spaces included).
SEED_002_XML_SUCCESS = """<?xml version="1.0" encoding="UTF-8"?>
<TwilioResponse>
    <Call>
        <Sid>06caf2045009d50fbb1da5b5926d2e2f</Sid>
        <ParentCallSid/>
        <DateCreated>2017-03-03 11:00:19</DateCreated>
        <DateUpdated>2017-03-03 11:00:19</DateUpdated>
        <AccountSid>Exotel</AccountSid>
        <To>0XXXXX40682</To>
        <From>0XXXXX30240</From>
        <PhoneNumberSid>0XXXXXX4890</PhoneNumberSid>
        <Status>in-progress</Status>
        <StartTime>2017-03-03 11:00:19</StartTime>
        <EndTime/>
        <Duration/>
        <Price/>
        <Direction>outbound-api</Direction>
        <AnsweredBy/>
        <ForwardedFrom/>
        <CallerName/>
        <Uri>/v1/Accounts/Exotel/Calls/06caf2045009d50fbb1da5b5926d2e2f</Uri>
        <RecordingUrl/>
    </Call>
</TwilioResponse>""".encode()

# Seed 003 (connect to a flow, old page): the XML success reply.
# 003_fefa238e0ee0fdf3.txt, lines 37-83, verbatim (no-break spaces included).
SEED_003_XML_SUCCESS = """<?xml version="1.0" encoding="UTF-8"?>

<TwilioResponse>

 <Call>

  <Sid>xxxxxxxxxxxxxxxxxxxx</Sid>

  <ParentCallSid/>

  <DateCreated>2012-08-17 12:31:49</DateCreated>

  <DateUpdated>2012-08-17 12:31:49</DateUpdated>

  <AccountSid>xxxxxxxxx</AccountSid>

  <To>09052161119</To>

  <From>09739761117</From>

  <PhoneNumberSid>xxxxxxx</PhoneNumberSid>

  <Status>in-progress</Status>

  <StartTime>2012-08-17 12:31:49</StartTime>

  <EndTime>2012-08-17 12:32:57</EndTime>

  <Duration></Duration>

  <Price></Price>

  <Direction>outbound-api</Direction>

  <AnsweredBy/>

  <ForwardedFrom/>

  <CallerName/>

  <RecordingUrl/>

  <Uri>/v1/Accounts/xxxxxxxx/Calls/xxxxxxxxxxxxxx</Uri>

 </Call>

</TwilioResponse>""".encode()

# Seed 003: the XML failure reply (RestException 400).
# 003_fefa238e0ee0fdf3.txt, lines 93-98, verbatim (no-break spaces included).
SEED_003_XML_FAILURE = """<TwilioResponse>
  <RestException>
    <Status>400</Status>
    <Message>Invalid Call Parameters: No 'From' specified</Message>
  </RestException>
</TwilioResponse>""".encode()

# Seed 004 (connect to a flow): the JSON success reply.
# 004_cb75418c1d5625cf.txt, lines 79-101, verbatim (no-break spaces included).
SEED_004_JSON_SUCCESS = b"""{
"Call": {
"Sid": "80bfbec2d78bbbf10fb851f4fa165211",
"ParentCallSid": null,
"DateCreated": "2017-03-03 12:30:24",
"DateUpdated": "2017-03-03 12:30:27",
"AccountSid": "your_sid",
"To": "0XXXXX40682",
"From": "09876543210",
"PhoneNumberSid": "0XXXXXX4890",
"Status": "in-progress",
"StartTime": "2017-03-03 12:30:27",
"EndTime": null,
"Duration": null,
"Price": null,
"Direction": "outbound-api",
"AnsweredBy": null,
"ForwardedFrom": null,
"CallerName": null,
"Uri": "/v1/Accounts/your_sid/Calls.json/80bfbec2d78bbbf10fb851f4fa165211",
"RecordingUrl": null
}
}"""

# Seed 001: the success sample as that page renders it (its tags are lost), not a document.
# 001_f45268e7c764cc8c.txt, lines 36-40, verbatim (no-break spaces included).
SEED_001_XML_MANGLED = """<?xml version="1.0" encoding="UTF-8"?>
  <DateCreated>2012-08-17 12:31:49</DateCreated>
  <DateUpdated>2012-08-17 12:31:49</DateUpdated>
  <StartTime>2012-08-17 12:31:49</StartTime>
  <EndTime>2012-08-17 12:32:57</EndTime>""".encode()


OUTCOME_TYPES = (Originated, NotPlaced, Rejected, Unknown)


def rest_xml(status: int, message: str) -> bytes:
    """The seed 003 failure document with another Status and Message."""
    return (
        SEED_003_XML_FAILURE.decode()
        .replace("<Status>400</Status>", f"<Status>{status}</Status>")
        .replace("Invalid Call Parameters: No 'From' specified", message)
        .encode()
    )


def rest_json(status: int, message: str) -> bytes:
    return json.dumps({"RestException": {"Status": status, "Message": message}}).encode()


# --------------------------------------------------------------------------------------------
# Success replies from the seeds


@pytest.mark.parametrize(
    ("body", "sid"),
    [
        (SEED_002_JSON_SUCCESS, "c5797dcbaaeed7678c4062a4a3ed2f8a"),
        (SEED_002_XML_SUCCESS, "06caf2045009d50fbb1da5b5926d2e2f"),
        (SEED_003_XML_SUCCESS, "xxxxxxxxxxxxxxxxxxxx"),
        (SEED_004_JSON_SUCCESS, "80bfbec2d78bbbf10fb851f4fa165211"),
    ],
    ids=["002-json", "002-xml", "003-xml", "004-json"],
)
def test_seed_success_replies_are_originated(body: bytes, sid: str) -> None:
    # The pages' no-break spaces, and the same reply as a server would send it.
    for candidate in (body, body.decode().replace("\u00a0", " ").encode()):
        for ctype in (None, "application/json", "application/xml", "text/html"):
            outcome = classify_response(200, {"Content-Type": ctype or ""}, candidate)
            assert outcome == Originated(sid=sid, status="in-progress")


def test_xml_and_json_success_parse_to_the_same_shape() -> None:
    from_xml = parse_reply(SEED_002_XML_SUCCESS)["Call"]
    from_json = parse_reply(SEED_002_JSON_SUCCESS)["Call"]
    assert set(from_xml) == set(from_json)
    assert from_xml["Sid"] == "06caf2045009d50fbb1da5b5926d2e2f"
    assert from_xml["Status"] == "in-progress"
    assert from_xml["Direction"] == "outbound-api"
    # Empty elements read as JSON's null.
    assert from_xml["EndTime"] is None and from_json["EndTime"] is None
    assert from_xml["ParentCallSid"] is None


def test_seed_failure_xml_is_rejected_with_its_message() -> None:
    assert parse_reply(SEED_003_XML_FAILURE) == {
        "RestException": {
            "Status": "400",
            "Message": "Invalid Call Parameters: No 'From' specified",
        }
    }
    assert classify_response(400, {}, SEED_003_XML_FAILURE) == Rejected(
        reason="Invalid Call Parameters: No 'From' specified", http_status=400
    )


# --------------------------------------------------------------------------------------------
# RestException replies, each documented status, XML and JSON

CASES = [
    (400, "Invalid Call Parameters: No 'From' specified", Rejected, False),
    (401, "Authentication failed", Rejected, True),
    (402, "Your plan does not allow this action or you have exceeded usage limits", Rejected, True),
    (
        403,
        "Your credentials are valid, but you don't have access to the requested resource",
        Rejected,
        True,
    ),
    (403, "Call to 09XXXXX1119 failed: number is on the DND register", Rejected, False),
    (404, "The requested resource was not found", Rejected, False),
    (409, "Conflict: resource is being updated", Rejected, False),
    (429, "Too Many Requests", NotPlaced, False),
    (500, "Internal Server Error", NotPlaced, False),
    (504, "Gateway Timeout", NotPlaced, False),
]


@pytest.mark.parametrize("render", [rest_xml, rest_json], ids=["xml", "json"])
@pytest.mark.parametrize(("status", "message", "kind", "account_level"), CASES)
def test_rest_exception_statuses(
    render: object, status: int, message: str, kind: type, account_level: bool
) -> None:
    body = render(status, message)  # type: ignore[operator]
    outcome = classify_response(status, {"Content-Type": "application/json"}, body)
    assert type(outcome) is kind
    if isinstance(outcome, Rejected):
        assert outcome.reason == message
        assert outcome.http_status == status
        assert outcome.account_level is account_level
    if isinstance(outcome, NotPlaced):
        assert outcome.http_status == status
        assert outcome.reason == message
        assert outcome.rate_limited is (status == 429)


@pytest.mark.parametrize(
    "message",
    [
        "Call to 09XXXXX1119 failed: number is on the DND register",
        "NDNC registered number",
        "The number is registered under NCPR (Do Not Disturb)",
        "This number has been blacklisted",
        "Number 08030752400 is not whitelisted for calls",
        "Customer has opted out of calls",
    ],
)
def test_per_number_403_is_not_account_level(message: str) -> None:
    outcome = classify_response(403, {}, rest_json(403, message))
    assert isinstance(outcome, Rejected) and outcome.account_level is False


@pytest.mark.parametrize(
    "message",
    [
        "Your credentials are valid, but you don't have access to the requested resource",
        "Authorization failed",
        "Account suspended. Contact support",
        "Please complete your KYC before making outbound calls",
        "Your IP address is not whitelisted",
        "",  # no message at all
    ],
)
def test_credential_or_account_403_is_account_level(message: str) -> None:
    outcome = classify_response(403, {}, rest_json(403, message))
    assert isinstance(outcome, Rejected) and outcome.account_level is True


def test_403_from_a_firewall_with_an_html_body_is_account_level() -> None:
    outcome = classify_response(403, {"Content-Type": "text/html"}, b"<html><body>Forbidden")
    assert isinstance(outcome, Rejected)
    assert outcome.account_level is True
    assert outcome.reason.startswith("HTTP 403")


@pytest.mark.parametrize("status", [502, 503])
def test_gateway_errors_are_unknown_not_not_placed(status: int) -> None:
    for body in (rest_json(status, "Bad Gateway"), b"<html>502 Bad Gateway</html>", b""):
        assert isinstance(classify_response(status, {}, body), Unknown)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>",
        b"",
        b"upstream request timeout",
        b'{"message": "Endpoint request timed out"}',
        b"<TwilioResponse><Call><Sid>x</Sid></Call></TwilioResponse>",
    ],
)
def test_a_504_whose_body_is_not_exotels_rest_exception_is_unknown(body: bytes) -> None:
    # F9: Exotel documents 504 (with its RestException) as "not originated"; any other 504
    # comes from a proxy or load balancer that may have timed out while Exotel originated.
    outcome = classify_response(504, {"Content-Type": "text/html"}, body)
    assert isinstance(outcome, Unknown)
    assert "504" in outcome.reason


@pytest.mark.parametrize("status", [100, 101, 204, 301, 302, 307, 501, 505, 599])
def test_undocumented_statuses_are_unknown(status: int) -> None:
    assert isinstance(classify_response(status, {}, b""), Unknown)


def test_other_2xx_with_a_sid_is_originated() -> None:
    assert classify_response(201, {}, SEED_002_JSON_SUCCESS) == Originated(
        sid="c5797dcbaaeed7678c4062a4a3ed2f8a", status="in-progress"
    )


def test_200_carrying_a_rest_exception_is_unknown() -> None:
    assert isinstance(classify_response(200, {}, rest_json(400, "odd")), Unknown)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Unknown),
        (400, Rejected),
        (404, Rejected),
        (429, NotPlaced),
        (500, NotPlaced),
        (504, Unknown),  # not Exotel's RestException: a gateway's (F9)
        (503, Unknown),
    ],
)
def test_garbage_body_keeps_the_status_class(status: int, kind: type) -> None:
    for body in (b"", b"garbage \x00\xff", b"<html><h1>Oops</h1>", b'{"Call": '):
        outcome = classify_response(status, {"Content-Type": "text/html"}, body)
        assert type(outcome) is kind
        if isinstance(outcome, Rejected | NotPlaced):
            assert outcome.reason.startswith(f"HTTP {status}")
            assert outcome.http_status == status


def test_a_secret_echoed_in_a_message_is_masked() -> None:
    message = "Invalid StatusCallback https://cb.example/x?tenant=a&token=s3cr3t-value"
    outcome = classify_response(400, {}, rest_json(400, message))
    assert isinstance(outcome, Rejected)
    assert "s3cr3t" not in outcome.reason
    assert "token=***" in outcome.reason


# --------------------------------------------------------------------------------------------
# Truncated, hostile and wrongly typed replies

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<TwilioResponse><Call><Sid>&lol9;</Sid><Status>in-progress</Status></Call></TwilioResponse>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE TwilioResponse [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<TwilioResponse><Call><Sid>&xxe;</Sid><Status>in-progress</Status></Call></TwilioResponse>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE TwilioResponse [<!ENTITY % ext SYSTEM "http://127.0.0.1:1/evil.dtd"> %ext;]>
<TwilioResponse><Call><Sid>abc</Sid></Call></TwilioResponse>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE TwilioResponse SYSTEM "http://127.0.0.1:1/evil.dtd">
<TwilioResponse><Call><Sid>abc</Sid></Call></TwilioResponse>"""


@pytest.mark.parametrize(
    "body",
    [
        SEED_002_XML_SUCCESS[: len(SEED_002_XML_SUCCESS) // 2],
        SEED_002_XML_SUCCESS[:-20],
        SEED_003_XML_SUCCESS[:200],
        SEED_001_XML_MANGLED,
        SEED_002_JSON_SUCCESS[:-3],
        b"<TwilioResponse/>",
        b"<",
        b"{",
        b"",
        b"   \n",
    ],
    ids=[
        "xml-half",
        "xml-tail",
        "003-head",
        "001-mangled",
        "json-tail",
        "empty-root",
        "lt",
        "brace",
        "empty",
        "blank",
    ],
)
def test_truncated_or_garbage_is_refused_and_200_is_unknown(body: bytes) -> None:
    with pytest.raises(ExotelReplyError):
        parse_reply(body)
    assert isinstance(classify_response(200, {"Content-Type": "application/xml"}, body), Unknown)


@pytest.mark.parametrize(
    "body", [BILLION_LAUGHS, XXE, XXE_PARAMETER, EXTERNAL_DTD], ids=["bomb", "xxe", "xxe-pe", "dtd"]
)
def test_entity_bombs_and_external_entities_are_refused(body: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(ExotelReplyError) as info:
        parse_reply(body, "application/xml")
    assert "root:" not in str(info.value)
    outcome = classify_response(200, {"Content-Type": "application/xml"}, body)
    assert isinstance(outcome, Unknown)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "reply",
    [
        {"Call": {"Sid": 12345, "Status": "in-progress"}},
        {"Call": {"Sid": None}},
        {"Call": {"Sid": ""}},
        {"Call": {"Sid": "has space"}},
        {"Call": {"Sid": ["abc"]}},
        {"Call": {"Status": "in-progress"}},
        {"Call": [{"Sid": "abc"}]},
        {"Call": "abc"},
        {"Call": None},
        {},
        [{"Call": {"Sid": "abc"}}],
        "abc",
        123,
    ],
)
def test_json_with_wrong_types_is_unknown_for_200(reply: object) -> None:
    assert isinstance(classify_response(200, {}, json.dumps(reply).encode()), Unknown)


def test_status_of_wrong_type_is_tolerated() -> None:
    body = json.dumps({"Call": {"Sid": "abc123", "Status": 7}}).encode()
    assert classify_response(200, {}, body) == Originated(sid="abc123", status="")


def test_parse_reply_sniffs_the_body_over_the_content_type() -> None:
    assert parse_reply(SEED_002_JSON_SUCCESS, "application/xml")["Call"]["Sid"]
    assert parse_reply(SEED_002_XML_SUCCESS, "application/json")["Call"]["Sid"]
    assert parse_reply(b"\xef\xbb\xbf" + SEED_002_JSON_SUCCESS)["Call"]["Sid"]
    namespaced = b'<TwilioResponse xmlns="urn:x"><Call><Sid>s1</Sid></Call></TwilioResponse>'
    assert parse_reply(namespaced) == {"Call": {"Sid": "s1"}}
    repeated = (
        b"<TwilioResponse><Calls><Call><Sid>a</Sid></Call><Call><Sid>b</Sid></Call>"
        b"</Calls></TwilioResponse>"
    )
    assert parse_reply(repeated) == {"Calls": {"Call": [{"Sid": "a"}, {"Sid": "b"}]}}


# --------------------------------------------------------------------------------------------
# Retry-After


def test_retry_after_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("0") == 0.0
    future = format_datetime(datetime.fromtimestamp(now + 30, tz=UTC), usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("99999999") == 86_400.0
    for bad in (None, "", "soon", "-5", "1e3", "nan", "inf", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad) is None


def test_429_carries_retry_after_from_any_header_case() -> None:
    body = rest_json(429, "Too Many Requests")
    for name in ("Retry-After", "retry-after", "RETRY-AFTER"):
        outcome = classify_response(429, {name: "12"}, body)
        assert outcome == NotPlaced(
            reason="Too Many Requests", http_status=429, retry_after=12.0, rate_limited=True
        )
    requests_headers = requests.structures.CaseInsensitiveDict({"retry-after": "3"})
    outcome = classify_response(429, requests_headers, b"")
    assert isinstance(outcome, NotPlaced) and outcome.retry_after == 3.0
    assert outcome.rate_limited
    no_hint = classify_response(429, {}, b"")
    assert isinstance(no_hint, NotPlaced) and no_hint.retry_after is None


def test_500_may_carry_retry_after_too() -> None:
    outcome = classify_response(500, {"Retry-After": "4"}, b"")
    assert isinstance(outcome, NotPlaced)
    assert outcome.retry_after == 4.0 and not outcome.rate_limited


# --------------------------------------------------------------------------------------------
# classify_exception on constructed exceptions (the real ones are in test_exotel_client.py)


def _wrapped(reason: BaseException) -> requests.ConnectionError:
    return requests.ConnectionError(uexc.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def test_classify_exception_table() -> None:
    refused = uexc.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    dns = uexc.NameResolutionError("api.exotel.com", None, OSError("no such host"))  # type: ignore[arg-type]
    assert isinstance(classify_exception(_wrapped(refused)), NotPlaced)
    assert isinstance(classify_exception(_wrapped(dns)), NotPlaced)
    assert isinstance(classify_exception(requests.ConnectTimeout()), NotPlaced)
    assert isinstance(classify_exception(requests.ReadTimeout()), Unknown)
    reset = uexc.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    assert isinstance(classify_exception(requests.ConnectionError(reset)), Unknown)
    gone = uexc.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))
    assert isinstance(classify_exception(requests.ConnectionError(gone)), Unknown)
    assert isinstance(classify_exception(requests.exceptions.ChunkedEncodingError()), Unknown)
    assert isinstance(classify_exception(requests.ConnectionError("???")), Unknown)
    assert isinstance(classify_exception(ValueError("bug")), Unknown)
    assert isinstance(classify_exception(KeyboardInterrupt()), Unknown)


def test_classify_exception_survives_cycles_and_hostile_exceptions() -> None:
    a = RuntimeError("a")
    b = RuntimeError("b")
    a.__cause__ = b
    b.__context__ = a
    assert isinstance(classify_exception(a), Unknown)

    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

        @property
        def args(self):  # type: ignore[override]
            raise RuntimeError("no")

    assert isinstance(classify_exception(Nasty()), Unknown)


# --------------------------------------------------------------------------------------------
# Properties

statuses = st.integers(min_value=100, max_value=599)
bodies = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=256).map(lambda t: ("<" + t).encode()),
    st.text(max_size=256).map(lambda t: ("{" + t).encode()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["Call", "Sid", "Status", "RestException", "Message"])
                | st.text(max_size=5),
                c,
                max_size=4,
            )
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [SEED_002_JSON_SUCCESS, SEED_002_XML_SUCCESS, SEED_003_XML_FAILURE, BILLION_LAUGHS, XXE]
    ).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Retry-After", "retry-after", "X-Other"]),
    st.text(max_size=40),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(status=statuses, headers=headers, body=bodies)
def test_classify_response_never_raises_and_returns_one_outcome(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    outcome = classify_response(status, headers, body)
    assert isinstance(outcome, OUTCOME_TYPES)
    assert sum(isinstance(outcome, kind) for kind in OUTCOME_TYPES) == 1
    if isinstance(outcome, Originated):
        assert 200 <= status < 300 and outcome.sid
    if 200 <= status < 300:
        assert isinstance(outcome, Originated | Unknown)
    if isinstance(outcome, NotPlaced):
        assert status in (429, 500, 504)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(
        [
            ValueError,
            OSError,
            ConnectionResetError,
            requests.ConnectionError,
            requests.ReadTimeout,
            requests.exceptions.ChunkedEncodingError,
            uexc.ProtocolError,
        ]
    ),
    args=st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none()), max_size=3),
)
def test_classify_exception_never_raises(kind: type[BaseException], args: list[object]) -> None:
    outcome = classify_exception(kind(*args))
    assert isinstance(outcome, Unknown)  # none of these proves that nothing was sent


@pytest.mark.parametrize("status", [429, 403, 400])
def test_a_refusal_naming_concurrent_calls_is_not_placed_at_capacity_a_429_rate_limited_too(
    status: int,
) -> None:
    message = "Too many concurrent calls: the account's concurrency limit has been reached"
    for body, ctype in (
        (rest_json(status, message), "application/json"),
        (rest_xml(status, message), "application/xml"),
    ):
        outcome = classify_response(status, {"Content-Type": ctype}, body)
        # A 429 naming concurrency may still be the rate's: it stays rate limited (pushes back).
        assert outcome == NotPlaced(
            reason=message,
            http_status=status,
            retry_after=None,
            rate_limited=status == 429,
            at_capacity=True,
        )
    # A plain rate-limit 429 stays what it was.
    plain = classify_response(429, {}, rest_json(429, "Too Many Requests"))
    assert isinstance(plain, NotPlaced) and plain.rate_limited and not plain.at_capacity
