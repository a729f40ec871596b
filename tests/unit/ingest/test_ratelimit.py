"""The in-memory token bucket: what a full bucket grants at one instant, and how it refills."""

from __future__ import annotations

import itertools

import pytest

from fraudlab.ingest.ratelimit import TokenBuckets

RATES = (0.01, 0.03, 0.3, 3.0, 7.0, 13.0, 1000.0)
BURSTS = (2, 3, 5, 50)
# Monotonic clocks of a fresh process up to months of uptime: the larger the clock, the coarser its float steps.
CLOCKS = (0.5, 981.3836890204183, 734145.9884837436, 9e6 + 0.123)


def _granted_at(buckets: TokenBuckets, now: float, wanted: int) -> int:
    return sum(buckets.take(1, now) for _ in range(wanted))


@pytest.mark.parametrize(("rate", "burst"), list(itertools.product(RATES, BURSTS)))
def test_a_full_bucket_grants_its_whole_burst_at_one_instant_whatever_the_clock(rate, burst):
    """A batch takes all its tokens at one `now`: summed intervals round off, and must not cost the last token."""
    granted = [_granted_at(TokenBuckets(rate, burst), now, burst + 2) for now in CLOCKS]
    assert granted == [burst] * len(CLOCKS)


def test_an_empty_bucket_grants_one_token_per_interval():
    buckets = TokenBuckets(rate=2.0, burst=3)
    start = 1000.0
    assert _granted_at(buckets, start, 5) == 3
    assert _granted_at(buckets, start + 0.49, 1) == 0
    assert _granted_at(buckets, start + 0.5, 2) == 1
    assert _granted_at(buckets, start + 10.0, 5) == 3

