"""bench/b24_drain.py runs and writes everything once without the portal refusing a request
(the rate it measures is a benchmark figure, not checked here)."""
from __future__ import annotations

from bench.b24_drain import drain


async def test_drain_writes_every_record_once_without_query_limit_exceeded():
    figures = await drain(writes=260, scale=50)
    assert (figures["written"], figures["failed"], figures["records_in_portal"]) == (260, 0, 260)
    assert figures["requests"] == 6  # 50 commands per batch request
    assert (figures["query_limit_exceeded"], figures["violations"]) == (0, 0)
