"""Routes, pending forwards and Trace answers of the relay (pure; relay/routes.py)."""

from __future__ import annotations

from c1222.relay.routes import ROUTE_MARGIN, Forward, PendingTable, RouteTable, trace_answer, \
    trace_path
from c1222 import limits

A, B, R1, R2 = "2.16.9.1", "2.16.9.2", "2.16.9.100", "2.16.9.200"


def test_a_route_lives_for_its_period_plus_the_margin() -> None:
    table = RouteTable()
    table.learn(A, 7, b"\x7f\0\0\1\4\x81", 100, now=1000.0)
    assert table.get(A, 1000.0 + 100 + ROUTE_MARGIN).link == 7  # type: ignore[union-attr]
    assert table.get(A, 1000.0 + 100 + ROUTE_MARGIN + 0.1) is None
    assert len(table) == 0  # dropped when found expired


def test_expire_returns_what_ran_out() -> None:
    table = RouteTable()
    table.learn(A, 1, b"", 10, now=0.0)
    table.learn(B, 1, b"", 1000, now=0.0)
    assert [r.title for r in table.expire(500.0)] == [A]
    assert [r.title for r in table] == [B]


def test_a_closed_link_keeps_the_native_address() -> None:
    table = RouteTable()
    table.learn(A, 3, b"addr", 100, now=0.0)
    assert [r.title for r in table.link_closed(3)] == [A]
    route = table.get(A, 1.0)
    assert route is not None and route.link is None and route.native_address == b"addr"


def test_nodes_behind_a_relay_know_it() -> None:
    table = RouteTable()
    table.learn(R1, 5, b"", 100, now=0.0, node_type=0x01)
    assert table.relay_on(5, 1.0).title == R1  # type: ignore[union-attr]
    assert table.relay_on(6, 1.0) is None
    assert table.relay_on(5, 1000.0) is None  # expired


def test_per_source_cap_and_full_table() -> None:
    table = RouteTable(max_routes=3, max_per_source=2)
    table.learn(A, 1, b"", 100, now=0.0, source="10.0.0.1")
    table.learn(B, 1, b"", 100, now=0.0, source="10.0.0.1")
    assert table.may_learn("", "10.0.0.1", 1.0) is not None  # a third from one address
    assert table.may_learn(A, "10.0.0.1", 1.0) is None  # re-registering a held title
    assert table.may_learn("", "10.0.0.2", 1.0) is None
    table.learn(R1, 2, b"", 100, now=0.0, source="10.0.0.2")
    assert "full" in (table.may_learn("", "10.0.0.3", 1.0) or "")
    assert table.may_learn("", "10.0.0.3", 1000.0) is None  # expired routes make room


def test_held_elsewhere_names_only_another_source() -> None:
    table = RouteTable()
    table.learn(A, 1, b"", 100, now=0.0, source="10.0.0.1")
    assert table.held_elsewhere(A, "10.0.0.1", 1.0) is None
    assert table.held_elsewhere(A, "10.0.0.9", 1.0) is not None
    assert table.held_elsewhere(A, "10.0.0.9", 1000.0) is None  # lapsed: free again


def test_trace_answers() -> None:
    table = RouteTable()
    table.learn(R2, 4, b"", 100, now=0.0, node_type=0x01)
    table.learn(A, 4, b"", 100, now=0.0, via=R2)
    table.learn(B, 9, b"", 100, now=0.0)
    assert trace_answer(table, R1, R1, 1.0) == (R1,)  # the relay itself
    assert trace_answer(table, B, R1, 1.0) == (R1,)  # attached directly
    assert trace_answer(table, A, R1, 1.0) == R2  # ask R2 for the rest
    try:
        trace_answer(table, "2.16.9.9", R1, 1.0)
    except KeyError:
        pass
    else:
        raise AssertionError("an unknown title must not be traced")
    assert trace_path(R1, (R2,)) == (R1, R2)
    assert len(trace_path(R1, [R2] * 500)) == limits.MAX_TRACE_HOPS  # a hostile answer


def _forward(out: int, a8: int, calling: str = A, into: int = 1, deadline: float = 10.0
             ) -> Forward:
    return Forward(out_link=out, invocation_id=a8, calling=calling, in_link=into,
                   deadline=deadline)


def test_pending_matches_by_link_invocation_id_and_title() -> None:
    pending = PendingTable()
    forward = _forward(2, 77)
    assert pending.add(forward)
    assert pending.match(3, 77, A) is None  # another link
    assert pending.match(2, 77, B) is None  # another title
    assert pending.in_transit(A, 77) is forward
    assert pending.match(2, 77, A) is forward
    assert pending.match(2, 77, A) is None  # once
    assert pending.in_transit(A, 77) is None


def test_pending_is_bounded() -> None:
    pending = PendingTable(max_pending=2)
    assert pending.add(_forward(2, 1)) and pending.add(_forward(2, 2))
    assert not pending.add(_forward(2, 3))
    assert pending.add(_forward(2, 2))  # the same key again replaces, never grows


def test_pending_deadlines_and_closed_links() -> None:
    pending = PendingTable()
    pending.add(_forward(2, 1, deadline=5.0))
    pending.add(_forward(3, 2, deadline=50.0))
    pending.add(_forward(4, 3, into=3, deadline=50.0))
    assert [f.invocation_id for f in pending.expired(10.0)] == [1]
    out, came_in = pending.link_closed(3)
    assert [f.invocation_id for f in out] == [2] and [f.invocation_id for f in came_in] == [3]
    assert len(pending) == 0


def test_the_relay_on_a_link_is_the_nearest_one() -> None:
    table = RouteTable()
    table.learn(R1, 5, b"", 100, now=0.0, node_type=0x01)
    table.learn(R2, 5, b"", 100, now=0.0, node_type=0x01, via=R1)  # behind R1, same link
    assert table.relay_on(5, 1.0).title == R1  # type: ignore[union-attr]
    table.learn(R1, 5, b"", 200, now=50.0, node_type=0x01)  # re-registers
    assert table.relay_on(5, 60.0).title == R1  # type: ignore[union-attr]
    table.remove(R1)
    assert table.relay_on(5, 60.0) is None


def test_source_index_follows_removal_and_expiry() -> None:
    table = RouteTable(max_per_source=1)
    table.learn(A, 1, b"", 10, now=0.0, source="h")
    assert table.may_learn("", "h", 1.0) is not None
    assert table.may_learn("", "h", 100.0) is None  # A expired: the place is free again
    table.learn(B, 1, b"", 10, now=100.0, source="h")
    table.remove(B)
    assert table.may_learn("", "h", 101.0) is None
