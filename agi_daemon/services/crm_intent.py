"""What a call asks of the CRM once its caller is looked up (R3): records to create, or an
offer to make, submitted to the outbox. Routing does it for the calls it decides; the call log
does it again for a call routing never saw (the daemon was restarted or down), the same way:
the command keys make the second submit of the same call change nothing."""
from __future__ import annotations

import logging
from datetime import datetime

from ..core.commands import CreateCallRecords, RecordOffer
from ..core.decisions import CrmAction, CreateRecords, MakeOffer, answered
from ..core.live_calls import OfferMade
from ..core.model import Offer
from ..core.phone import masked
from ..core.model import Rules
from ..core.ports import CrmCommands, CrmError, Notifier
from ..core.rules import CallFacts

log = logging.getLogger(__name__)


async def submit_intent(commands: CrmCommands, notifier: Notifier, call: CallFacts, action: CrmAction,
                        now: datetime) -> None:
    """Submit what `action` says the call creates; returns once it is durable. An offer is
    also published, so the agents' call windows show its buttons."""
    if isinstance(action, CreateRecords):
        await commands.submit(CreateCallRecords(action.plan))
    elif isinstance(action, MakeOffer):
        offer = Offer(call.linkedid, call.direction, call.line.number, call.external or "", action.employees, now)
        await commands.submit(RecordOffer(offer))
        notifier.publish(OfferMade(offer))
        log.info("call %s: offer to create a record for %s", call.linkedid, masked(call.external))


async def submit_without_lookup(commands: CrmCommands, notifier: Notifier, rules: Rules, call: CallFacts,
                                now: datetime, failure: CrmError) -> None:
    """The CRM stayed unreachable through the lookup's retries: the records a new caller would
    get are submitted all the same. Their delivery looks before it creates (the number's
    client, once the CRM answers, is joined, not doubled), so a long outage loses no new
    caller's lead. An offer needs to know the caller is new: none is made."""
    action = answered(rules, call, None).action
    if not isinstance(action, CreateRecords):
        log.error("call %s: CRM lookup of %s given up: %s", call.linkedid, masked(call.external), failure)
        return
    log.warning("call %s: CRM lookup of %s given up (%s); its records are submitted, the CRM joins a client it "
                "already has", call.linkedid, masked(call.external), failure)
    await submit_intent(commands, notifier, call, action, now)
