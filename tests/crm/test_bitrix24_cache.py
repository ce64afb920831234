"""The short memory of lookups, on a hand-driven clock, and the operations that use it."""
from __future__ import annotations


from agi_daemon.core.model import EntityType
from agi_daemon.crm.bitrix24.auth import WebhookAuth
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.cache import LookupCache
from agi_daemon.crm.bitrix24.client import Bitrix24Client
from agi_daemon.crm.bitrix24.operations import (
    Bitrix24Operations,
    EmployeeDirectory,
    EmployeeLink,
    KnownClient,
    NewRecord,
)

CLIENT = "+33612000001"
KNOWN = KnownClient(EntityType.CONTACT, 4, 11, "alice")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_remembered_lookup_expires_after_its_ttl():
    clock = Clock()
    cache = LookupCache(ttl_seconds=10, clock=clock)
    cache.put(CLIENT, KNOWN)
    cache.put("+33699999999", None)
    assert cache.get(CLIENT) == (True, KNOWN)
    assert cache.get("+33699999999") == (True, None)  # "unknown" is remembered too
    clock.now = 10.0
    assert cache.get(CLIENT) == (False, None)


def test_own_writes_forget_what_they_change():
    cache = LookupCache(clock=Clock())
    cache.put(CLIENT, KNOWN)
    cache.put("+33699999999", None)
    cache.forget_entity(EntityType.CONTACT, 4)
    cache.forget_phone("+33699999999")
    assert cache.get(CLIENT) == (False, None)
    assert cache.get("+33699999999") == (False, None)


def test_full_cache_drops_its_oldest_entry():
    cache = LookupCache(max_entries=2, clock=Clock())
    for phone in ("+1", "+2", "+3"):
        cache.put(phone, None)
    assert [cache.get(phone)[0] for phone in ("+1", "+2", "+3")] == [False, True, True]


async def test_caller_calling_back_costs_no_request_until_the_daemon_creates_their_record(portal):
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50))
    await client.open()
    operations = Bitrix24Operations(client, EmployeeDirectory([EmployeeLink("alice", crm_user=11)]), LookupCache())
    try:
        assert await operations.find_client(CLIENT) is None
        assert await operations.find_client(CLIENT) is None
        assert portal.requests == 1
        await operations.create_record(NewRecord(EntityType.LEAD, "Call", "c1:lead", "CALL", 11, phone=CLIENT))
        found = await operations.find_client(CLIENT)
        assert (found.entity, found.responsible) == (EntityType.LEAD, "alice")
        await operations.set_responsible(EntityType.LEAD, found.entity_id, 11)
        await operations.find_client(CLIENT)
        assert portal.requests == 5  # lookup, create, lookup, update, lookup
    finally:
        await client.close()
