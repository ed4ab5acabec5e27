"""Campaign rows: the CallRequest model, the CSV reader, request ids, and report-cell
neutralising."""

from __future__ import annotations

import io
from pathlib import Path

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.parse import bench_csv
from callq.intake.csvread import read_rows
from callq.intake.csvsafe import neutralise
from callq.intake.request import CallRequest, FileIssue, RowError, request_id

Item = CallRequest | RowError | FileIssue
HEAD = "From,To,CallerId"
FLOW = "http://my.exotel.com/acme1/exoml/start_voice/926"


def read(data: bytes | str, **kw: str) -> list[Item]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_rows(io.BytesIO(raw), **kw))


def split(items: list[Item]) -> tuple[list[CallRequest], list[RowError], list[FileIssue]]:
    return (
        [i for i in items if isinstance(i, CallRequest)],
        [i for i in items if isinstance(i, RowError)],
        [i for i in items if isinstance(i, FileIssue)],
    )


def only_error(items: list[Item]) -> RowError:
    rows, errors, _ = split(items)
    assert not rows and len(errors) == 1, items
    return errors[0]


# --- the two variants -------------------------------------------------------------------------


def test_given_connect_two_numbers_rows_when_read_then_numbers_are_e164() -> None:
    items = read(
        "From,To,CallerId,CustomField,TimeLimit,TimeOut,CallType,Record\n"
        "09052161119, +91 90521 61118 ,08030752400,order-7,600,30,trans,TRUE\n"
    )
    assert items == [
        CallRequest(
            line=2,
            from_="+919052161119",
            to="+919052161118",
            caller_id="+918030752400",
            custom_field="order-7",
            time_limit=600,
            time_out=30,
            extra={"CallType": "trans", "Record": "true"},
        )
    ]


def test_given_connect_to_a_flow_rows_when_read_then_url_kept_and_to_none() -> None:
    (call,) = read(f"from,url,callerid\n9052161119,{FLOW},08030752400\n")
    assert isinstance(call, CallRequest)
    assert (call.from_, call.to, call.url) == ("+919052161119", None, FLOW)


@pytest.mark.parametrize(
    ("to", "url", "field", "words"),
    [
        ("9052161118", FLOW, "Url", "not both"),
        ("", "", "To", "is empty, and so is Url"),
        ("", "ftp://my.exotel.com/x", "Url", "must start with http:// or https://"),
        ("", "http:///no-host", "Url", "no valid host"),
        ("", "my.exotel.com/flow", "Url", "must start with http"),
        ("", "http://exa mple.com/", "Url", "spaces"),
        ("", "http://example.com:99999/", "Url", "not a URL"),
    ],
)
def test_given_not_exactly_one_of_to_and_url_or_a_bad_url_then_refused(
    to: str, url: str, field: str, words: str
) -> None:
    error = only_error(read(f"From,To,Url,CallerId\n9052161119,{to},{url},08030752400\n"))
    assert (error.line, error.field) == (2, field)
    assert words in error.message


# --- bounds and bad values ----------------------------------------------------------------------


def test_given_time_limit_99999_when_read_then_refused_naming_time_limit_and_line() -> None:
    error = only_error(
        read(
            f"{HEAD},TimeLimit\n9052161119,9052161118,08030752400,600\n"
            "9052161119,9052161117,08030752400,99999\n"
        )[1:]
    )
    assert (error.line, error.field) == (3, "TimeLimit")
    assert str(error).startswith("line 3: TimeLimit: 99999 is out of range")
    assert "14400" in str(error)


def test_given_time_out_61_when_read_then_refused() -> None:
    error = only_error(read(f"{HEAD},TimeOut\n9052161119,9052161118,08030752400,61\n"))
    assert (error.line, error.field) == (2, "TimeOut")
    assert "61 is out of range" in error.message and "60" in error.message


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("TimeLimit", "ten", "not a whole number"),
        ("TimeLimit", "0", "out of range"),
        ("TimeLimit", "-5", "not a whole number"),
        ("CallType", "spam", "not one of trans, promo"),
        ("Record", "yes", "not one of true, false"),
        ("RecordingChannels", "stereo", "not one of single, dual"),
        ("RecordingFormat", "wav", "not one of mp3, mp3-hq"),
        ("WaitUrl", "javascript:alert(1)", "not a URL"),
        ("StreamUrlNew", "https://x.example/", "must start with ws:// or wss://"),
        ("RequestKey", "k" * 300, "the limit is 256"),
    ],
)
def test_given_a_bad_optional_value_then_refused_naming_its_column(
    column: str, value: str, words: str
) -> None:
    error = only_error(read(f"{HEAD},{column}\n9052161119,9052161118,08030752400,{value}\n"))
    assert error.field == column
    assert words in error.message


def test_given_good_optional_params_then_kept_in_extra_in_canonical_form() -> None:
    (call,) = read(
        f"{HEAD},RecordingChannels,RecordingFormat,WaitUrl,StartPlaybackToNew,"
        "StartPlaybackValueNew,StreamUrlNew,StreamBeginNew\n"
        "9052161119,9052161118,08030752400,DUAL,mp3-hq,https://w.example/wait,both,"
        "https://a.example/a.mp3,wss://s.example/stream,leg2connect\n"
    )
    assert isinstance(call, CallRequest)
    assert call.extra == {
        "RecordingChannels": "dual",
        "RecordingFormat": "mp3-hq",
        "WaitUrl": "https://w.example/wait",
        "StartPlaybackToNew": "Both",
        "StartPlaybackValueNew": "https://a.example/a.mp3",
        "StreamUrlNew": "wss://s.example/stream",
        "StreamBeginNew": "Leg2Connect",
    }


def test_given_a_bad_number_when_read_then_the_error_names_line_field_and_value() -> None:
    error = only_error(read(f"{HEAD}\n9052161119,12345,08030752400\n"))
    assert str(error) == "line 2: To: '12345' is not a valid phone number (too short)"


def test_given_several_problems_in_a_row_then_one_error_naming_them_all() -> None:
    error = only_error(read(f"{HEAD},TimeOut\n12,9052161118,08030752400,99\n"))
    assert error.field == "From"
    assert "; also TimeOut: 99 is out of range" in error.message


def test_given_an_empty_from_cell_then_refused_on_from() -> None:
    error = only_error(read(f"{HEAD}\n ,9052161118,08030752400\n"))
    assert (error.line, error.field) == (2, "From")


# --- caller id ----------------------------------------------------------------------------------


def test_given_no_caller_id_and_a_default_then_the_default_is_used_normalised() -> None:
    (call,) = read("From,To,CallerId\n9052161119,9052161118,\n", default_caller_id="080 3075 2400")
    assert isinstance(call, CallRequest) and call.caller_id == "+918030752400"
    (call,) = read("From,To\n9052161119,9052161118\n", default_caller_id="08030752400")
    assert isinstance(call, CallRequest) and call.caller_id == "+918030752400"


def test_given_no_caller_id_and_no_default_then_refused_on_caller_id() -> None:
    error = only_error(read("From,To,CallerId\n9052161119,9052161118,\n"))
    assert error.field == "CallerId"
    issues = split(read("From,To\n9052161119,9052161118\n"))[2]
    assert len(issues) == 1 and "no CallerId column" in issues[0].message


def test_given_a_bad_default_caller_id_then_a_file_issue_and_rows_with_their_own_still_read() -> (
    None
):
    rows, errors, issues = split(
        read(
            f"{HEAD}\n9052161119,9052161118,08030752400\n9052161119,9052161117,\n",
            default_caller_id="123",
        )
    )
    assert len(rows) == 1 and [e.line for e in errors] == [3]
    assert "default caller id" in issues[0].message


# --- file-level problems ------------------------------------------------------------------------


def test_given_no_from_column_then_one_file_issue_and_no_rows() -> None:
    items = read("To,CallerId\n9052161118,08030752400\n9052161117,08030752400\n")
    assert len(items) == 1 and isinstance(items[0], FileIssue)
    assert "no From column" in items[0].message


def test_given_a_semicolon_separated_file_then_the_issue_says_so() -> None:
    (issue,) = read("From;To;CallerId\n9052161119;9052161118;08030752400\n")
    assert isinstance(issue, FileIssue) and "comma" in issue.message


def test_given_an_unknown_column_then_one_issue_naming_it_and_rows_still_accepted() -> None:
    items = read(
        f"{HEAD},Notes, Recrod \n9052161119,9052161118,08030752400,vip,\n"
        "9052161119,9052161117,08030752400,,\n"
    )
    rows, errors, issues = split(items)
    assert len(rows) == 2 and not errors
    assert [i.message for i in issues] == [
        "unknown column 'Notes' (column 4) is ignored",
        "unknown column 'Recrod' (column 5) is ignored (did you mean Record?)",
    ]


def test_given_header_names_in_any_case_with_spaces_then_matched() -> None:
    (call,) = read(" FROM , to ,callerID\n9052161119,9052161118,08030752400\n")
    assert isinstance(call, CallRequest)


def test_given_a_column_named_twice_then_one_issue_and_no_rows() -> None:
    (issue,) = read("From,To,CallerId,to\n9052161119,9052161118,08030752400,9052161117\n")
    assert isinstance(issue, FileIssue) and "appears twice" in issue.message


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_given_an_empty_file_then_no_header_issue(data: bytes) -> None:
    assert read(data) == [FileIssue("the file has no header row")]


def test_given_a_header_only_file_then_no_data_rows_issue() -> None:
    assert read(f"{HEAD}\n\n,,\n") == [FileIssue("the file has no data rows")]


def test_given_a_utf16_file_then_one_issue() -> None:
    (issue,) = read(f"{HEAD}\n9052161119,9052161118,08030752400\n".encode("utf-16"))
    assert isinstance(issue, FileIssue) and "UTF-16" in issue.message


# --- structure: encodings, cells, lines, quotes ------------------------------------------------


def test_given_a_non_utf8_line_among_good_lines_then_good_ones_still_returned() -> None:
    data = (
        b"From,To,CallerId,CustomField\n"
        b"9052161119,9052161118,08030752400,a\n"
        b"9052161119,9052161117,08030752400,caf\xe9\n"
        b"9052161119,9052161116,08030752400,c\n"
    )
    rows, errors, _ = split(read(data))
    assert [r.line for r in rows] == [2, 4]
    (error,) = errors
    assert (error.line, error.field) == (3, "CustomField")
    assert "not UTF-8 text" in error.message
    offset = data.index(b"\xe9")
    assert f"byte offset {offset}" in error.message


def test_given_a_bom_and_crlf_or_cr_line_endings_then_read_alike() -> None:
    body = [HEAD, "9052161119,9052161118,08030752400", "9052161119,9052161117,08030752400"]
    for ending in ("\n", "\r\n", "\r"):
        rows, errors, issues = split(read(b"\xef\xbb\xbf" + ending.join(body).encode()))
        assert [r.line for r in rows] == [2, 3] and not errors and not issues, ending


def test_given_a_row_with_an_extra_cell_then_refused_naming_the_line() -> None:
    rows, errors, _ = split(
        read(
            f"{HEAD}\n9052161119,9052161118,08030752400,surprise\n"
            "9052161119,9052161117,08030752400\n9052161119\n"
        )
    )
    assert [r.line for r in rows] == [3]
    assert [(e.line, e.field) for e in errors] == [(2, "row"), (4, "row")]
    assert errors[0].message == "has 4 cells but the header has 3"


def test_given_blank_lines_then_skipped_and_line_numbers_still_physical() -> None:
    rows = split(read(f"\n{HEAD}\n\n9052161119,9052161118,08030752400\n , ,\n"))[0]
    assert [r.line for r in rows] == [4]


def test_given_a_huge_custom_field_then_refused_not_crashed() -> None:
    rows, errors, _ = split(
        read(
            f"{HEAD},CustomField\n9052161119,9052161118,08030752400,{'x' * 5000}\n"
            "9052161119,9052161117,08030752400,ok\n"
        )
    )
    assert [r.line for r in rows] == [3]
    assert (errors[0].line, errors[0].field) == (2, "CustomField")
    assert "5000 characters" in errors[0].message


@pytest.mark.parametrize("cell", ["x" * 300_000, '"' + "x" * 300_000, "x" * 70_000])
def test_given_a_giant_line_then_refused_and_the_next_line_read(cell: str) -> None:
    rows, errors, _ = split(
        read(
            f"{HEAD},CustomField\n9052161119,9052161118,08030752400,{cell}\n"
            "9052161119,9052161117,08030752400,ok\n"
        )
    )
    assert [r.line for r in rows] == [3]
    assert [(e.line, e.field) for e in errors] == [(2, "row")]


def test_given_a_quoted_cell_with_a_newline_then_it_is_one_row() -> None:
    (call,) = read(f'{HEAD},CustomField\n9052161119,9052161118,08030752400,"two\nlines"\n')
    assert isinstance(call, CallRequest)
    assert (call.line, call.custom_field) == (2, "two\nlines")


@pytest.mark.parametrize(
    "bad",
    [
        '9052161119,9052161111,08030752400,"never closed',
        '"9052161119,9052161111,08030752400,x',
        '9052161119,9052161111,08030752400,"closed" late',
    ],
)
def test_given_a_quote_left_open_then_one_error_and_the_following_rows_kept(bad: str) -> None:
    good = [f"9052161119,905216112{i},08030752400,ok{i}" for i in range(5)]
    text = "\n".join([f"{HEAD},CustomField", good[0], bad, *good[1:]]) + "\n"
    rows, errors, _ = split(read(text))
    assert [r.line for r in rows] == [2, 4, 5, 6, 7]
    assert [(e.line, e.field) for e in errors] == [(3, "row")]


def test_given_an_open_quote_closed_lines_later_then_the_lines_between_are_kept() -> None:
    text = (
        f"{HEAD},CustomField\n"
        '"9052161119,9052161118,08030752400,a\n'
        "9052161119,9052161117,08030752400,b\n"
        '9052161119",9052161116,08030752400,c\n'
    )
    rows, errors, _ = split(read(text))
    assert [r.line for r in rows] == [3]
    assert [e.line for e in errors] == [2, 4]


# --- CSV injection is data; neutralised only in reports -----------------------------------------

INJECTION = "=cmd|' /C calc'!A0"


def test_given_a_formula_in_custom_field_then_kept_verbatim_as_data() -> None:
    (call,) = read(f'{HEAD},CustomField\n9052161119,9052161118,08030752400,"{INJECTION}"\n')
    assert isinstance(call, CallRequest) and call.custom_field == INJECTION
    assert call.to_record()["custom_field"] == INJECTION


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (INJECTION, "'" + INJECTION),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("+919052161119", "+919052161119"),  # E.164 stays readable
        ("+14155552671", "+14155552671"),
        ("+91 90521 61119", "'+91 90521 61119"),  # not exactly E.164
        ("+919052161119=1", "'+919052161119=1"),
        ("+0123", "'+0123"),
        ("order-7", "order-7"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_given_a_report_cell_when_neutralised_then_formulas_are_inert(
    value: str, cell: str
) -> None:
    assert neutralise(value) == cell


# --- keys and ids --------------------------------------------------------------------------------


def _call(**kw: object) -> CallRequest:
    base: dict[str, object] = {
        "line": 2,
        "from_": "9052161119",
        "to": "9052161118",
        "caller_id": "08030752400",
    }
    return CallRequest.model_validate(base | kw)


def test_given_the_same_call_then_the_same_row_key_whatever_the_format_or_line() -> None:
    a = _call()
    b = _call(line=99, from_="+91 90521 61119", to="09052161118", time_limit=30)
    assert a.row_key() == b.row_key()
    assert a.row_key() != _call(custom_field="x").row_key()
    assert a.row_key() != _call(to=None, url=FLOW).row_key()
    # Pinned: changing the digest would make re-running an old file enqueue it again.
    assert a.row_key() == "0efe77916f4a33d916e7e97495c6c7c200f94231b9601832509b627e16e594c9"


def test_given_a_request_key_then_it_is_the_row_key() -> None:
    (call,) = read(f"{HEAD},RequestKey\n9052161119,9052161118,08030752400, inv-42 \n")
    assert isinstance(call, CallRequest) and call.row_key() == "inv-42"


def test_given_a_campaign_and_row_key_then_request_id_is_deterministic() -> None:
    rid = request_id("reminders-2026.11", "inv-42")
    assert rid == request_id("reminders-2026.11", "inv-42")
    assert rid == "reminders-2026.11:d7380eba58551a26268f"  # sha256(campaign NUL key)[:20]
    assert rid.startswith("reminders-2026.11:") and len(rid.split(":")[1]) == 20
    assert request_id("other", "inv-42").split(":")[1] != rid.split(":")[1]
    assert request_id("reminders-2026.11", "inv-43") != rid


@pytest.mark.parametrize("campaign", ["", "a:b", "-x", "x" * 65, "abc\n", "a b"])
def test_given_a_bad_campaign_then_request_id_refuses(campaign: str) -> None:
    with pytest.raises(ValueError, match="campaign"):
        request_id(campaign, "k")


def test_given_a_call_then_to_record_is_flat_strings() -> None:
    call = _call(time_out=20, extra={"CallType": "trans", "Record": "true"})
    assert call.to_record() == {
        "from": "+919052161119",
        "to": "+919052161118",
        "url": "",
        "caller_id": "+918030752400",
        "custom_field": "",
        "time_limit": "",
        "time_out": "20",
        "extra": '{"CallType":"trans","Record":"true"}',
        "line": "2",
        "zone": "Asia/Calcutta",  # the callee's (To's) zone
    }


def test_given_direct_construction_then_the_same_checks_apply() -> None:
    with pytest.raises(pydantic.ValidationError, match="To: '12345' is not a valid"):
        _call(to="12345")
    with pytest.raises(pydantic.ValidationError, match="exactly one of To"):
        _call(url=FLOW)
    with pytest.raises(pydantic.ValidationError, match="TimeLimit"):
        _call(time_limit=99999)
    with pytest.raises(pydantic.ValidationError, match="not one of"):
        _call(extra={"CallType": "robo"})
    with pytest.raises(pydantic.ValidationError):
        _call(extra={"StatusCallback": "http://x.example/"})
    read_back = split(read(f"{HEAD}\n9052161119,9052161118,08030752400\n"))[0][0]
    assert CallRequest.model_validate(read_back.model_dump()) == read_back


def test_given_a_path_then_read_like_a_stream(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_bytes(bench_csv(3))
    assert len(split(list(read_rows(path)))[0]) == 3
    assert len(split(list(read_rows(str(path))))[0]) == 3


# --- never raises ---------------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        b"From",
        b"To",
        b"Url",
        b"CallerId",
        b"TimeLimit",
        b",",
        b'"',
        b"\n",
        b"\r",
        b"\r\n",
        b"9052161119",
        b"08030752400",
        b"\xff",
        b"\xef\xbb\xbf",
        b"\x00",
        b" ",
        b"99999",
        FLOW.encode(),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.lists(_pieces, max_size=60).map(b"".join)))
def test_given_arbitrary_bytes_then_read_rows_never_raises(data: bytes) -> None:
    for item in read_rows(
        io.BytesIO(b"From,To,CallerId\n" + data), default_caller_id="08030752400"
    ):
        assert isinstance(item, CallRequest | RowError | FileIssue)
    for item in read_rows(io.BytesIO(data)):
        assert isinstance(item, CallRequest | RowError | FileIssue)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(None),  # a good row
            st.binary(max_size=60).filter(lambda b: not (set(b) & set(b'"\n\r'))),
        ),
        max_size=30,
    )
)
def test_given_good_rows_among_quote_free_junk_then_every_good_row_is_returned(
    lines: list[bytes | None],
) -> None:
    out = [b"From,To,CallerId"]
    good_lines = []
    for n, junk in enumerate(lines, start=2):
        if junk is None:
            out.append(b"9052161119,%d,08030752400" % (9052160000 + n))
            good_lines.append(n)
        else:
            out.append(junk)
    rows = split(read(b"\n".join(out) + b"\n"))[0]
    assert [r.line for r in rows if r.to and r.to.startswith("+9190521600")] == good_lines


def test_given_a_call_then_its_callee_zone_is_to_s_or_for_a_flow_from_s() -> None:
    assert _call(to="+971501234567").to_record()["zone"] == "Asia/Dubai"
    flow = _call(from_="+12025550123", to=None, url="http://my.exotel.com/sid/exoml/start/1")
    assert flow.to_record()["zone"] == "America/New_York"
