"""Phone number normalisation: whatever a campaign file holds -> E.164, or a clear refusal.

Accepted (region ``IN`` by default): E.164 (``+919052161119``), ``91`` + 10 digits, 10-digit
national numbers, a leading ``0`` (``09052161119``, STD landlines ``08030752400``), and any of
these written with spaces, dashes, dots or parentheses. The judge of validity is
``phonenumbers.is_valid_number``; nothing is accepted that it refuses.

Stricter than ``phonenumbers`` on purpose: only ASCII digits, one leading ``+`` and the
separators above are allowed. ``phonenumbers`` silently drops or converts other characters
(``"+91 9O52161119"`` with a letter O parses as a *different*, 9-digit number; ``"... ext 12"``
is accepted and the extension dropped), and a queue that dials must not guess.

Speed: ``phonenumbers.parse`` + ``is_valid_number`` costs ~17 us, and a producer row holds two
fresh numbers. The fast path handles the shape nearly every Indian number arrives in
(optional ``+91`` / ``91`` / ``0``, then 10 digits starting 2-9) in ~1 us. It is not a
hand-written guess: for a 10-digit national number starting 2-9, India's ``general_desc``
always matches and the only number types whose patterns can match are fixed-line and mobile,
so ``is_valid_number`` is exactly "fixed-line pattern or mobile pattern matches". The fast
path evaluates those two patterns, taken from the installed ``phonenumbers`` metadata at
import time (so it follows library upgrades), and only ever *accepts*; anything it does not
accept goes to ``phonenumbers`` itself (cached, so repeated CallerIds cost nothing).
``tests/unit/test_phone.py`` checks the equivalence with hypothesis, and checks the metadata
assumptions above so that a future metadata change that broke them would fail loudly.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
import phonenumbers.timezone
import phonenumbers.tzdata
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from phonenumbers.phonemetadata import PhoneMetadata

from callq.errors import InvalidRow

__all__ = ["callee_zone", "fast_path", "normalise_number"]

MAX_INPUT_CHARS = 40

# Separators people type inside numbers. NBSP and tabs come from spreadsheets.
_SEPARATORS = str.maketrans("", "", " \t\u00a0-().")
_DIGITS_ONLY = re.compile(r"\+?[0-9]{1,20}")
# Optional +91 / 91 / 0, then a 10-digit national number starting 2-9 (the fast-path shape).
_FAST_SHAPE = re.compile(r"(?:\+91|91|0)?([2-9][0-9]{9})")


def _national_pattern() -> re.Pattern[str]:
    meta = PhoneMetadata.metadata_for_region("IN")
    if meta is None or meta.mobile is None or meta.fixed_line is None:  # pragma: no cover
        return re.compile(r"(?!)")  # no metadata: never take the fast path
    mobile = meta.mobile.national_number_pattern
    fixed = meta.fixed_line.national_number_pattern
    return re.compile(f"(?:{mobile})|(?:{fixed})")


_IN_NATIONAL = _national_pattern()


def _india_zone() -> str | None:
    """India's one zone when the metadata maps every +91 number to it (no longer prefix)."""
    data = phonenumbers.tzdata.TIMEZONE_DATA
    zones = data.get("91", ())
    if len(zones) != 1 or any(k.startswith("91") and k != "91" for k in data):
        return None  # pragma: no cover - then every number takes the slow path
    return str(zones[0])


_IN_ZONE = _india_zone()
_UNKNOWN_ZONE = "Etc/Unknown"

_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.INVALID_LENGTH: "wrong length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number; add the STD code",
}


def show(raw: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut short if long."""
    if len(raw) > limit:
        return repr(raw[:limit]) + f"... ({len(raw)} characters)"
    return repr(raw)


def fast_path(cleaned: str, region: str = "IN") -> str | None:
    """E.164 for a separator-free number of the fast shape that is valid, else None.

    None means "ask phonenumbers", never "invalid".
    """
    if region != "IN":
        return None
    m = _FAST_SHAPE.fullmatch(cleaned)
    if m is None:
        return None
    national = m.group(1)
    if _IN_NATIONAL.fullmatch(national) is None:
        return None
    return "+91" + national


@lru_cache(maxsize=8192)
def _slow(cleaned: str, region: str) -> tuple[str, bool]:
    """(E.164, True) or (reason, False). Cached: CallerIds and retried files repeat."""
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        reason = {
            NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
            NumberParseException.TOO_SHORT_NSN: "too short",
            NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
            NumberParseException.TOO_LONG: "too long",
        }.get(exc.error_type, "not a number")
        return reason, False
    if phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, PhoneNumberFormat.E164), True
    why = phonenumbers.is_possible_number_with_reason(parsed)
    return _REASONS.get(why, "no such number range"), False


def normalise_number(raw: str, *, field: str, region: str = "IN") -> str:
    """Return ``raw`` as E.164, or raise :class:`InvalidRow` naming ``field``.

    The message shows the value and what is wrong with it, e.g.
    ``'12345' is not a valid phone number (too short)``.
    """
    value = raw.strip()
    if not value:
        raise InvalidRow(field, "is empty")
    if len(value) > MAX_INPUT_CHARS:
        raise InvalidRow(field, f"{show(value)} is too long to be a phone number")
    cleaned = value.translate(_SEPARATORS)
    if _DIGITS_ONLY.fullmatch(cleaned) is None:
        raise InvalidRow(
            field,
            f"{show(value)} is not a phone number: only digits, a leading +, spaces, dashes, "
            "dots and parentheses are allowed",
        )
    fast = fast_path(cleaned, region)
    if fast is not None:
        return fast
    result, ok = _slow(cleaned, region)
    if ok:
        return result
    raise InvalidRow(field, f"{show(value)} is not a valid phone number ({result})")


def callee_zone(e164: str) -> str:
    """The time zone of an E.164 number when it maps to exactly one, else '' (several zones,
    as for the UK's +44 or Canada's +1 non-geographic ranges, or none known): a
    ``--window-zone callee`` campaign then judges that call in the campaign's own zone.
    Names are those of ``phonenumbers`` (``Asia/Calcutta`` for India, an alias of
    ``Asia/Kolkata``). Every +91 number takes a shortcut (India has one zone in the metadata,
    checked at import); any other costs ~45 us."""
    if _IN_ZONE is not None and e164.startswith("+91"):
        return _IN_ZONE
    try:
        zones = phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(e164))
    except NumberParseException:
        return ""
    return str(zones[0]) if len(zones) == 1 and zones[0] != _UNKNOWN_ZONE else ""
