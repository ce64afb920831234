"""What a call asks of the CRM once its caller is looked up (R3): records to create, or an
offer to make, submitted to the outbox. Routing does it for the calls it decides; the call log
does it again for a call routing never saw (the daemon was restarted or down), the same way:
the command keys make the second submit of the same call change nothing."""
from __future__ import annotations

import logging
from datetime import datetime

from ..core.commands import CreateCallRecords, RecordOffer
from ..core.decisions import CrmAction, CreateRecords, MakeOffer
from ..core.live_calls import OfferMade
from ..core.model import Offer
from ..core.phone import masked
from ..core.ports import CrmCommands, Notifier
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
