"""Collection sharded over head-end workers: every title has exactly one owner, stably."""
from __future__ import annotations

import pytest

from c1222.errors import ConfigurationError
from c1222.headend.server import HeadEnd, HeadEndConfig, shard_of

TITLES = [f"2.16.124.113620.1.22.0.123.{100000 + i}" for i in range(2000)]


def test_every_title_has_one_owner_and_the_split_is_even() -> None:
    heads = [HeadEnd(HeadEndConfig(db="sqlite:///:memory:", shard_index=i, shard_count=3))
             for i in range(3)]
    owners = [[h.owns(t) for h in heads].count(True) for t in TITLES]
    assert owners == [1] * len(TITLES)
    shares = [sum(h.owns(t) for t in TITLES) for h in heads]
    assert min(shares) > len(TITLES) / 3 * 0.85


def test_the_shard_is_stable_and_unsharded_owns_all() -> None:
    # a fixed value: the shard must not depend on the process (str hash() is salted)
    assert [shard_of(t, 7) for t in TITLES[:8]] == [1, 4, 4, 5, 4, 4, 0, 5]
    alone = HeadEnd(HeadEndConfig(db="sqlite:///:memory:"))
    assert all(alone.owns(t) for t in TITLES[:50])


@pytest.mark.parametrize("index,count", [(2, 2), (-1, 2), (0, 0)])
def test_a_bad_shard_is_refused(index: int, count: int) -> None:
    with pytest.raises(ConfigurationError):
        HeadEndConfig(shard_index=index, shard_count=count)
