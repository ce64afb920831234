"""Phone numbers as people write them -> E.164, and the masked form used in logs."""
from __future__ import annotations

import re

from functools import lru_cache

import phonenumbers


class InvalidPhone(ValueError):
    """The text is not a phone number phonenumbers can read in the given region."""


@lru_cache(maxsize=8192)  # pure; lines and regular callers repeat on every call
def to_e164(text: str, region: str) -> str:
    """Normalise "+33 1 84 88 00 00", "01 84 88 00 00" or "0033184880000" to "+33184880000".

    Raises InvalidPhone when the text cannot be read as a possible number.
    """
    raw = (text or "").strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{text!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone(f"{text!r} is not a possible phone number in region {region}")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    _remember_parsed(e164, parsed)
    return e164


# The numbers `to_e164` read last, by their E.164 form: a new caller's record is named from
# its number (`readable`) right after the number was read, and reading a number again
# (phonenumbers.parse) costs more than formatting it. Bounded (emptied when full: clear and
# store are each atomic, so threads reading numbers together need no lock); a number not
# here is parsed again.
_PARSED: dict[str, phonenumbers.PhoneNumber] = {}
_PARSED_MAX = 1024


def _remember_parsed(e164: str, parsed: phonenumbers.PhoneNumber) -> None:
    if parsed.extension:  # "… ext. 12": E.164 has no extension, and neither has its readable form
        return
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[e164] = parsed


def readable(e164: str) -> str:
    """An E.164 number as people read it: "+33184880000" -> "+33 1 84 88 00 00"."""
    parsed = _PARSED.get(e164)
    if parsed is None:
        parsed = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def is_valid(e164: str) -> bool:
    """Whether phonenumbers knows `e164` as a number its country gives out (not only one of a
    possible length): "+33014000000", "01 40 00 00 0" read in France, is possible, not valid."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def try_e164(text: str, region: str) -> str | None:
    try:
        return to_e164(text, region)
    except InvalidPhone:
        return None


def dial_forms(e164: str, region: str) -> tuple[str, ...]:
    """The digit strings a trunk may deliver for this number that `to_e164(form, region)`
    reads back to it: E.164 with and without '+', the 00 international prefix, the national form with
    its trunk prefix, and the national number without it."""
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    national_digits = "".join(ch for ch in national if ch.isdigit())
    digits = e164.lstrip("+")
    significant = phonenumbers.national_significant_number(parsed)
    forms = [e164, digits, "00" + digits, national_digits, significant]
    # Only the forms the daemon reads back to this number in `region`: a national form of a
    # foreign line would be another number (or none) to the daemon.
    return tuple(dict.fromkeys(form for form in forms if form and try_e164(form, region) == e164))


def masked(number: str | None, keep: int = 4) -> str:
    """Only the last digits, for logs: "+33184880000" -> "…0000"."""
    if not number:
        return "-"
    digits = "".join(filter(str.isdigit, number))
    return "…" + digits[-keep:] if len(digits) > keep else "…"


# A phone number a remote CRM or the database quotes back in an error text ("input":
# "+33612345678", PostgreSQL's "DETAIL: Key (phone)=(+33612345678)", "+33 6 12 34 56 78"): an
# international number (its digits maybe in groups of 2 to 4 after the first), or any run of 9
# digits or more (a national number of any country, an international one without its +). A
# Unix time or a long id is masked too: the number's privacy first. A linkedid
# ("1700000000.12": a run followed by a dot and digits) is kept.
_QUOTED_NUMBER = re.compile(
    r"\+\d{6,15}(?!\d)"  # +33612345678
    r"|\+\d{1,3}[ .\-]?\d{1,4}(?:[ .\-]\d{2,4}){2,5}(?!\d)"  # +33 6 12 34 56 78, +7 916 123-45-67
    r"|(?<![\d.])\d{9,15}(?!\d|\.\d)"  # 0612345678, 612345678, 33612345678
)


def numbers_masked(text: str) -> str:
    """`text` (an error from the database or a remote CRM) with the phone numbers it quotes
    shown as `masked` shows them."""
    return _QUOTED_NUMBER.sub(lambda number: masked(number.group()), text)
