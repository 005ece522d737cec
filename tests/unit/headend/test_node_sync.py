"""A head-end worker follows the registrations the other workers stored
(HeadEnd.sync_nodes, docs/headend.md "Workers"): nodes registered elsewhere are taken in,
a newer registration at another address replaces ours, a later deregistration drops ours,
and a node gone from storage (retention, on worker 0) is dropped once it expired here too."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from c1222.codec.native import native_address_text
from c1222.headend.server import HeadEnd, HeadEndConfig
from c1222.headend.registry import Node
from c1222.headend.storage import NodeRecord

A, B = "2.16.124.113620.1.22.0.123.7001", "2.16.124.113620.1.22.0.123.7002"
NOW = time.time()  # retention's expiry is judged against the clock


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(NOW + seconds, dt.timezone.utc)


def record(title: str, address: str = "127.0.0.1:4000", when: float = 0.0,
           state: str = "registered") -> NodeRecord:
    return NodeRecord(title, address, node_type=0x20, connection_type=0x40,
                      registration_period=3600, registered_at=at(when), last_seen=at(when),
                      state=state)


def worker() -> HeadEnd:
    return HeadEnd(HeadEndConfig(db="sqlite:///:memory:", shard_index=1, shard_count=2))


def local(head: HeadEnd, title: str, address: bytes, when: float) -> None:
    head.registrar.nodes[title] = Node(ap_title=title, native_address=address,
                                       registered_at=NOW + when, last_seen=NOW + when,
                                       registration_period=3600, node_type=0x20,
                                       connection_type=0x40, device_class=b"",
                                       serial_number="")


def test_nodes_registered_with_another_worker_are_taken_in() -> None:
    head = worker()
    head.sync_nodes([record(A), record(B, "127.0.0.1:4001")], NOW)
    assert set(head.registrar.nodes) == {A, B}
    assert native_address_text(head.node(B).native_address) == "127.0.0.1:4001"


def test_a_newer_registration_elsewhere_replaces_ours_an_older_one_does_not() -> None:
    head = worker()
    local(head, A, bytes([127, 0, 0, 1, 0x0F, 0xA0]), 0.0)
    ours = head.registrar.nodes[A]
    head.sync_nodes([record(A, "127.0.0.1:4001", when=-30)], NOW)  # older: ours stays
    assert head.registrar.nodes[A] is ours
    head.sync_nodes([record(A, "127.0.0.1:4001", when=30)], NOW + 30)  # it moved since
    assert head.registrar.nodes[A] is not ours
    assert head.registrar.nodes[A].registered_at == pytest.approx(NOW + 30)


def test_a_later_deregistration_drops_ours_an_earlier_one_does_not() -> None:
    head = worker()
    local(head, A, b"\x7f\x00\x00\x01\x0f\xa0", 0.0)
    head.sync_nodes([record(A, when=-30, state="deregistered")], NOW)
    assert A in head.registrar.nodes  # it registered again here after that
    head.sync_nodes([record(A, when=30, state="deregistered")], NOW + 30)
    assert A not in head.registrar.nodes


def test_a_node_gone_from_storage_is_dropped_once_expired_here() -> None:
    head = worker()
    local(head, A, b"\x7f\x00\x00\x01\x0f\xa0", 0.0)
    # expired for longer than --node-retention (7 days): what retention removes
    local(head, B, b"\x7f\x00\x00\x01\x0f\xa1", -30 * 86400.0)
    head.sync_nodes([], NOW + 5)
    # A: just registered here (its own write may not be stored yet, or it registered again
    # after retention on worker 0 removed it): kept. B: retention removed it: dropped.
    assert set(head.registrar.nodes) == {A}
