"""`simulate` (agi_daemon/simulation.py) is a dry run: it answers with routing's decision and
leaves nothing running behind it."""
from __future__ import annotations

from agi_daemon.core.model import Direction
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.core.rules import CallEntry
from agi_daemon.simulation import simulate
from tests.fakes.rules import PARIS, make_rules


class DownCrm:
    """A CRM whose every lookup fails, counting them."""

    def __init__(self) -> None:
        self.lookups = 0

    async def find_by_phone(self, phone: str):
        self.lookups += 1
        raise CrmUnavailable("down for the test")


async def test_simulation_with_the_crm_down_answers_the_fallback_without_retrying_the_lookup():
    crm = DownCrm()
    decision = await simulate(make_rules(), crm, CallEntry(Direction.INCOMING, PARIS, "+33699887766"))
    assert decision.route is not None and decision.route.queue_group  # routed to the queue group
    # the lookup and routing's immediate second try; its retries after 0.2, 1 and 5 s are not
    # waited for, nor made (a real call's CRM work would make them: 5 lookups)
    assert crm.lookups <= 2
