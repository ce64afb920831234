"""What a record added by hand needs, checked once for `crm add` and `crm import`.

A new contact, company or lead needs a name (UTF-8 text of at most NAME_MAX_LENGTH
characters), a phone number (as people write it, read in the
daemon's default region) and, when a responsible is given, an employee of the config file.
A number already on a contact, company or lead is not added again: `crm add` refuses it and
`crm import` skips it (`already_on`), so the CRM never holds two records that R6 would have
to choose between.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..core.model import NAME_MAX_LENGTH, EntityType, name_too_long
from ..core.phone import InvalidPhone, masked, to_e164

__all__ = ["NAME_MAX_LENGTH", "CLIENT_TYPES", "NewRecord", "RecordRefused", "already_on", "new_record", "phone_number"]

# The record types a phone number identifies a client by (R6 looks in this order).
CLIENT_TYPES = (EntityType.CONTACT, EntityType.COMPANY, EntityType.LEAD)


@dataclass(frozen=True)
class NewRecord:
    """A record ready to be added: name, E.164 number, responsible employee id or None."""

    name: str
    phone: str
    responsible: str | None


class RecordRefused(ValueError):
    """Why a record cannot be added, in the admin's words ("the name is empty")."""


def phone_number(text: str, region: str) -> str:
    """The E.164 form of a number as people write it; RecordRefused when it is not one."""
    if not text.strip():
        raise RecordRefused("the phone is empty")
    try:
        return to_e164(text, region)
    except InvalidPhone as exc:
        if f"not a possible phone number in region {region}" in str(exc):
            raise RecordRefused(str(exc)) from None
        raise RecordRefused(f"{text.strip()!r} is not a phone number") from None  # not the library's words


def new_record(name: str, phone: str, responsible: str | None, *,
               region: str, employees: Collection[str]) -> NewRecord:
    """The checked record, or RecordRefused saying what is wrong."""
    name = name.strip()
    if not name:
        raise RecordRefused("the name is empty")
    if (too_long := name_too_long(name)) is not None:
        raise RecordRefused(too_long)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (a terminal in another encoding)
        raise RecordRefused("the name is not UTF-8 text: check the terminal's or the file's encoding") from None
    e164 = phone_number(phone, region)
    responsible = (responsible or "").strip() or None
    if responsible is not None and responsible not in employees:
        raise RecordRefused(f"the responsible {responsible!r} is not an employee of the config file")
    return NewRecord(name, e164, responsible)


def already_on(entity: str, phone: str) -> str:
    """The message for a number that is already on a record ("contact:12")."""
    return f"phone {masked(phone)} is already on {entity}"
