"""The routing `Rules` built from the file: phone numbers normalised to E.164 with
`daemon.default_region`, and every name that refers to another key checked.

Checks: a line's queue group exists; queue group members are employees, each listed once, at
least one of them with an extension to ring; two employees never share an extension; an
employee's `line` is one of the `numbers`; two `numbers` keys are never the same number
written twice. An employee phone that is also on the CRM exception list is allowed: both rules
keep the call out of the CRM (R7, R8). Warnings: a number of a possible length that its country
does not give out (a digit missing: it would never match a caller), a queue group member
without an extension (never rung).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from agi_daemon.core.model import CrmPolicy, Dialing, Employee, Line, LineCrm, QueueGroup, Rules
from agi_daemon.core.phone import InvalidPhone, is_valid, to_e164

from .errors import KeyPath, ProblemLog
from .schema import CrmSettings, EmployeeEntry, NumberEntry, QueueGroupEntry


def build_rules(region: str, crm: CrmSettings, employees: Mapping[str, EmployeeEntry],
                queue_groups: Mapping[str, QueueGroupEntry], numbers: Mapping[str, NumberEntry],
                dialing: Dialing, log: ProblemLog) -> Rules:
    """The Rules of a file whose sections are each valid; cross-reference problems go to `log`."""
    phones = _PhoneReader(region, log)
    lines = _lines(numbers, queue_groups, phones, log)
    return Rules(
        default_region=region,
        employees=MappingProxyType(_employees(employees, lines, phones, log)),
        queue_groups=MappingProxyType(_queue_groups(queue_groups, employees, log)),
        lines=MappingProxyType(lines),
        crm=CrmPolicy(
            mode=crm.mode,
            pipeline=crm.simple.pipeline,
            create_with=crm.simple.create_with,
            exception_phones=frozenset(phones.read_all(crm.exceptions.phones, ("crm", "exceptions", "phones"))),
            exception_emails=frozenset(email.lower() for email in crm.exceptions.emails),
        ),
        dialing=dialing,
    )


class _PhoneReader:
    """Numbers as people write them -> E.164; a problem at the number's line when unreadable."""

    def __init__(self, region: str, log: ProblemLog) -> None:
        self._region = region
        self._log = log

    def read(self, text: str, path: KeyPath) -> str | None:
        try:
            number = to_e164(text, self._region)
        except InvalidPhone:
            self._log.add(path, f"not a phone number: {text}")
            return None
        if not is_valid(number):
            self._log.add(path, f"{text} reads as {number}, which phonenumbers does not know as a number given "
                                "out in its country: a digit missing or one too many?", warning=True)
        return number

    def read_all(self, texts: tuple[str, ...], path: KeyPath) -> list[str]:
        read = (self.read(text, (*path, index)) for index, text in enumerate(texts))
        return [number for number in read if number is not None]


def _lines(numbers: Mapping[str, NumberEntry], queue_groups: Mapping[str, QueueGroupEntry],
           phones: _PhoneReader, log: ProblemLog) -> dict[str, Line]:
    lines: dict[str, Line] = {}
    written_as: dict[str, str] = {}
    for key, entry in numbers.items():
        if entry.queue_group not in queue_groups:
            log.add(("numbers", key, "queue_group"), f"unknown queue group: {entry.queue_group}")
        number = phones.read(key, ("numbers", key))
        if number is None:
            continue
        if number in lines:
            log.add(("numbers", key), f"same number as {written_as[number]!r} ({number})")
            continue
        written_as[number] = key
        lines[number] = Line(number=number, name=entry.name, queue_group=entry.queue_group,
                             crm=LineCrm(**entry.crm.model_dump()))
    return lines


def _employees(employees: Mapping[str, EmployeeEntry], lines: Mapping[str, Line],
               phones: _PhoneReader, log: ProblemLog) -> dict[str, Employee]:
    result: dict[str, Employee] = {}
    extension_owner: dict[str, str] = {}
    for employee_id, entry in employees.items():
        path = ("employees", employee_id)
        if entry.extension is not None:
            owner = extension_owner.setdefault(entry.extension, employee_id)
            if owner != employee_id:
                log.add((*path, "extension"), f"extension {entry.extension} is already {owner}'s")
        line = None
        if entry.line is not None:
            line = phones.read(entry.line, (*path, "line"))
            if line is not None and line not in lines:
                log.add((*path, "line"), f"not one of the numbers: {entry.line}")
        result[employee_id] = Employee(id=employee_id, name=entry.name, extension=entry.extension,
                                       phones=tuple(phones.read_all(entry.phones, (*path, "phones"))),
                                       line=line, admin=entry.admin)
    return result


def _queue_groups(queue_groups: Mapping[str, QueueGroupEntry], employees: Mapping[str, EmployeeEntry],
                  log: ProblemLog) -> dict[str, QueueGroup]:
    result: dict[str, QueueGroup] = {}
    for group_id, entry in queue_groups.items():
        for index, member in enumerate(entry.members):
            path = ("queue_groups", group_id, "members", index)
            if member not in employees:
                log.add(path, f"unknown employee: {member}")
            elif member in entry.members[:index]:
                log.add(path, f"{member} is listed twice")
            elif employees[member].extension is None:
                log.add(path, f"{member} has no extension: never rung in this queue group", warning=True)
        known = [employees[member] for member in entry.members if member in employees]
        if known and all(employee.extension is None for employee in known):
            log.add(("queue_groups", group_id, "members"),
                    "no member has an extension: the calls of this queue group would ring nobody")
        result[group_id] = QueueGroup(id=group_id, members=entry.members, strategy=entry.strategy,
                                      ring_seconds=entry.ring_seconds)
    return result
