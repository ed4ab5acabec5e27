"""Phone number normalisation: accepted formats, refusals, and the fast path proven equal to
phonenumbers on its shape."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

from callq.errors import InvalidRow
from callq.intake import phone
from callq.intake.phone import fast_path, normalise_number


def reference(raw: str, region: str = "IN") -> str | None:
    """What phonenumbers itself says: E.164 if valid, else None."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def ours(raw: str) -> str | None:
    try:
        return normalise_number(raw, field="To")
    except InvalidRow:
        return None


# --- accepted formats (EXOTEL.md: E.164 preferred; 0-prefixed mobiles; STD landlines) --------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+919052161119", "+919052161119"),  # E.164
        ("919052161119", "+919052161119"),  # 91 + 10 digits
        ("9052161119", "+919052161119"),  # 10-digit mobile
        ("09052161119", "+919052161119"),  # 0-prefixed mobile
        ("08030752400", "+918030752400"),  # STD landline (an ExoPhone)
        ("+91 90521 61119", "+919052161119"),
        ("+91-90521-61119", "+919052161119"),
        ("(+91) 90521 61119", "+919052161119"),
        ("080 3075 2400", "+918030752400"),
        ("+91 (80) 3075-2400", "+918030752400"),
        ("  +91 90521.61119\u00a0", "+919052161119"),
        ("+91 09052161119", "+919052161119"),  # a stray national prefix: phonenumbers path
        ("0091 9052161119", "+919052161119"),  # international dialling prefix
        ("+14155552671", "+14155552671"),  # a valid foreign number is a valid number
    ],
)
def test_given_an_accepted_format_when_normalised_then_e164(raw: str, e164: str) -> None:
    assert normalise_number(raw, field="To") == e164
    assert reference(raw) == e164


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("12345", "not a valid phone number (too short)"),
        ("+9190521611190", "not a valid phone number"),
        ("0000000000", "not a valid phone number"),
        ("+91 9O52161119", "only digits"),  # letter O: phonenumbers would drop it silently
        ("9052161119 ext 12", "only digits"),  # phonenumbers would drop the extension
        ("\uff19\uff10\uff15\uff12\uff11\uff16\uff11\uff11\uff11\uff19", "only digits"),
        ("90521+61119", "only digits"),
        ("=cmd|' /C calc'!A0", "only digits"),
        ("9" * 60, "too long to be a phone number"),
        ("", "is empty"),
        ("   ", "is empty"),
    ],
)
def test_given_a_bad_number_when_normalised_then_refused_naming_the_field(
    raw: str, why: str
) -> None:
    with pytest.raises(InvalidRow) as info:
        normalise_number(raw, field="To")
    assert info.value.field == "To"
    assert why in info.value.message
    assert "Traceback" not in str(info.value)


def test_given_a_bad_number_then_the_message_shows_the_value() -> None:
    with pytest.raises(InvalidRow) as info:
        normalise_number("12345", field="CallerId")
    assert str(info.value) == "CallerId: '12345' is not a valid phone number (too short)"


def test_given_common_shapes_when_normalised_then_phonenumbers_is_not_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(cleaned: str, region: str) -> tuple[str, bool]:
        raise AssertionError(f"slow path taken for {cleaned}")

    monkeypatch.setattr(phone, "_slow", boom)
    for raw in ("+919052161119", "9052161119", "09052161119", "919052161119", "08030752400"):
        assert normalise_number(raw, field="From").startswith("+91")


# --- the fast path is exactly phonenumbers on its shape ---------------------------------------

_META = PhoneMetadata.metadata_for_region("IN")
assert _META is not None


def _pattern(desc: PhoneNumberDesc | None) -> str:
    assert desc is not None and desc.national_number_pattern is not None
    # ASCII digits only: in a str pattern, \d would also generate other scripts' digits.
    return str(desc.national_number_pattern).replace("\\d", "[0-9]")


_MOBILE = _pattern(_META.mobile)
_FIXED = _pattern(_META.fixed_line)

national = st.one_of(
    st.from_regex(r"[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(rf"(?:{_MOBILE})", fullmatch=True),
    st.from_regex(rf"(?:{_FIXED})", fullmatch=True),
).filter(lambda n: len(n) == 10 and n[0] in "23456789")
prefixes = st.sampled_from(["", "0", "91", "+91", "+91 ", "+91-", "(+91) ", "0 "])


def _spaced(digits: str, cuts: list[int]) -> str:
    out, last = [], 0
    for cut in sorted(set(cuts)):
        out.append(digits[last:cut])
        last = cut
    out.append(digits[last:])
    return " ".join(p for p in out if p)


@settings(max_examples=1500, deadline=None)
@given(national, prefixes, st.lists(st.integers(1, 9), max_size=3))
@example("9052161119", "+91", [])
@example("6000000000", "", [])
@example("8030752400", "0", [])
@example("9123456789", "", [])  # starts with the country code's digits
@example("9123456789", "91", [])
def test_given_the_fast_shape_then_fast_path_equals_phonenumbers(
    digits: str, prefix: str, cuts: list[int]
) -> None:
    raw = prefix + _spaced(digits, cuts)
    expected = reference(raw)
    cleaned = re.sub(r"[ ()\-]", "", raw)
    # Exact on its shape: accepts every valid number and nothing else.
    assert fast_path(cleaned) == expected
    assert ours(raw) == expected


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789+ -().", max_size=20))
@example("+91 1800 123 4567")
@example("00919052161119")
def test_given_any_number_like_text_then_accepted_exactly_when_phonenumbers_accepts(
    raw: str,
) -> None:
    # On the allowed characters our answer is phonenumbers' answer; +s other than one leading
    # + are refused by us (phonenumbers ignores some of them).
    cleaned = re.sub(r"[ ()\-.]", "", raw)
    if re.fullmatch(r"\+?[0-9]*", cleaned) is None:
        assert ours(raw) is None
    else:
        assert ours(raw) == reference(raw)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=50))
def test_given_any_text_then_only_invalid_row_or_a_valid_number(raw: str) -> None:
    result = ours(raw)  # never raises anything but InvalidRow
    if result is not None:
        assert reference(result) == result


def test_given_india_metadata_then_only_fixed_line_and_mobile_can_match_the_fast_shape() -> None:
    """The fast path rests on this: a 10-digit number starting 2-9 always matches India's
    general description, and no other number type's pattern can match it. Checked here on the
    installed metadata so that an upgrade which broke it fails loudly."""
    assert _META is not None
    general = re.compile(_pattern(_META.general_desc))
    assert general.fullmatch("2000000000") and general.fullmatch("9999999999")
    for desc in (_META.general_desc, _META.mobile, _META.fixed_line):
        assert desc is not None and 10 in desc.possible_length
    others = [
        _META.toll_free,
        _META.premium_rate,
        _META.shared_cost,
        _META.personal_number,
        _META.voip,
        _META.pager,
        _META.uan,
        _META.voicemail,
    ]
    for desc in others:
        if desc is None or desc.national_number_pattern is None:
            continue
        # Every alternative of these patterns starts with a literal 0 or 1.
        pattern = desc.national_number_pattern
        for alternative in _top_level_alternatives(pattern):
            assert alternative[0] in "01", (pattern, alternative)


def _top_level_alternatives(pattern: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(pattern):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
    parts.append(pattern[start:])
    return parts
