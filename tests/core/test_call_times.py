"""Ring and talk time (R12): one function for both call records."""
from datetime import datetime, timedelta, timezone

import pytest

from agi_daemon.core.call_times import ring_and_talk

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def t(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("answered, ended, ring, talk", [
    (4.0, 64.0, 4.0, 60.0),  # rang 4 s, talked a minute
    (None, 20.0, 20.0, 0.0),  # nobody answered: it rang until the end
    (0.0, 0.0, 0.0, 0.0),  # answered at once, hung up at once
    (1.2345, 3.0, 1.234, 1.766),  # to the millisecond (1.2345 is 1.23449999... in binary)
    (None, -1.0, 0.0, 0.0),  # clocks disagree (an end before the start): never negative
    (5.0, 4.0, 5.0, 0.0),
])
def test_ring_runs_to_the_answer_or_the_end_and_talk_from_the_answer_to_the_end(answered, ended, ring, talk):
    assert ring_and_talk(t(0), t(answered) if answered is not None else None, t(ended)) == (ring, talk)
