"""The head-end's registrar: caps per source address and overall, protected titles, forgetting
aged-out nodes (docs/storage.md, "Registration limits")."""

from __future__ import annotations

from typing import Any

import pytest

from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem
from c1222.codec.services import (
    DeregisterRequest,
    OkResponse,
    RegisterRequest,
    RegisterResponse,
    ResolveRequest,
)
from c1222.codes import ResponseCode
from c1222.errors import ServiceError
from c1222.headend.registry import ASSIGNED_BASE, Node, RegistrarServices
from c1222.session.responder import ServiceContext

#: The request a service handler is handed in these tests (the handlers do not read it).
NO_APDU = Apdu(epsem=Epsem(), calling_ap_invocation_id=1)

HEADEND = Uid.parse("2.16.124.113620.1.22.0.123.4")
#: Link ids and the host each stands for (what the head-end's endpoint would say).
HOSTS = {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.1", 9: "10.0.0.9"}


def title(n: int) -> Uid:
    return Uid.parse(f"2.16.124.113620.1.22.0.5.{n}")


def register(t: Uid | str, *, period: int = 60) -> RegisterRequest:
    uid = Uid.parse(t) if isinstance(t, str) else t
    return RegisterRequest(node_type=0x04, connection_type=0x01, device_class=b"SIMU",
                           ap_title=uid, serial_number=Uid.parse(".1"),
                           native_address=b"10.0.0.1:1153", registration_period=period)


def ctx(peer: int, now: float = 1000.0) -> ServiceContext:
    return ServiceContext(peer=peer, now=now, apdu=NO_APDU)


def code(registrar: RegistrarServices, request: Any, context: ServiceContext) -> ResponseCode:
    with pytest.raises(ServiceError) as info:
        registrar.handle(request, context)
    return info.value.code


def registrar(**kwargs: Any) -> RegistrarServices:
    return RegistrarServices(HEADEND, source_of=HOSTS.get, **kwargs)


def test_one_address_may_register_only_so_many_distinct_titles() -> None:
    r = registrar(max_per_source=3)
    for n in range(3):
        assert isinstance(r.handle(register(title(n)), ctx(1)), RegisterResponse)
    # A fourth title from the same host (another connection of it, too) is refused: ONP.
    assert code(r, register(title(3)), ctx(1)) == ResponseCode.ONP
    assert code(r, register(title(3)), ctx(3)) == ResponseCode.ONP
    # An empty title asking to be assigned one counts too, and spends no title.
    assert code(r, register(Uid((), relative=True)), ctx(1)) == ResponseCode.ONP
    # Re-registering a title it holds is always fine; another host has its own budget.
    assert isinstance(r.handle(register(title(0)), ctx(3)), RegisterResponse)
    assert isinstance(r.handle(register(title(3)), ctx(2)), RegisterResponse)
    # A deregistered title frees its place.
    assert isinstance(r.handle(DeregisterRequest(title(1)), ctx(1)), OkResponse)
    assert isinstance(r.handle(register(title(4)), ctx(1)), RegisterResponse)
    assert sorted(r.nodes) == sorted(str(title(n)) for n in (0, 2, 3, 4))
    assert r.nodes[str(title(4))].source == "10.0.0.1"


def test_register_flood_with_random_titles_stays_bounded() -> None:
    r = registrar(max_per_source=64)
    refused = 0
    for n in range(2000):
        try:
            r.handle(register(title(n)), ctx(1))
        except ServiceError as exc:
            assert exc.code == ResponseCode.ONP
            refused += 1
    assert len(r.nodes) == 64 and refused == 2000 - 64


def test_no_cap_without_a_source_or_with_cap_zero() -> None:
    r = RegistrarServices(HEADEND, max_per_source=1)  # no source_of: the source is unknown
    r.handle(register(title(0)), ctx(1))
    r.handle(register(title(1)), ctx(1))
    unlimited = registrar(max_per_source=0)
    for n in range(100):
        unlimited.handle(register(title(n)), ctx(1))
    assert len(r.nodes) == 2 and len(unlimited.nodes) == 100


def test_full_registry_refuses_new_titles_with_onp_but_serves_known_ones() -> None:
    r = registrar(max_nodes=2, max_per_source=None)
    r.handle(register(title(0)), ctx(1))
    r.handle(register(title(1)), ctx(2))
    assert code(r, register(title(2)), ctx(9)) == ResponseCode.ONP
    assert isinstance(r.handle(register(title(1)), ctx(2)), RegisterResponse)


def test_protected_titles_cannot_be_hijacked_from_another_address() -> None:
    r = registrar(protect_titles=True)
    r.handle(register(title(0), period=60), ctx(1, now=1000.0))
    held = r.nodes[str(title(0))]
    # Another host can neither take the title over nor deregister it: ISC.
    assert code(r, register(title(0)), ctx(2, now=1010.0)) == ResponseCode.ISC
    assert code(r, DeregisterRequest(title(0)), ctx(2, now=1010.0)) == ResponseCode.ISC
    assert r.nodes[str(title(0))] is held
    # Its own host may, over any connection.
    assert isinstance(r.handle(register(title(0)), ctx(3, now=1020.0)), RegisterResponse)
    # Once the registration lapsed (last seen + period) a node that moved may register anew.
    assert isinstance(r.handle(register(title(0)), ctx(2, now=1020.0 + 61)), RegisterResponse)
    assert r.nodes[str(title(0))].source == "10.0.0.2"
    # Without protection (cleartext head-end) a Register from anywhere wins, as before.
    open_ = registrar()
    open_.handle(register(title(0)), ctx(1))
    assert isinstance(open_.handle(register(title(0)), ctx(2)), RegisterResponse)


def test_forget_drops_nodes_and_their_place_under_the_cap() -> None:
    r = registrar(max_per_source=2)
    r.handle(register(title(0)), ctx(1))
    r.handle(register(title(1)), ctx(1))
    assert code(r, register(title(2)), ctx(1)) == ResponseCode.ONP
    dropped = r.forget([str(title(0)), "2.16.124.113620.1.22.0.99"])
    assert [n.ap_title for n in dropped] == [str(title(0))]
    assert code(r, ResolveRequest(title(0)), ctx(1)) == ResponseCode.UAT
    assert isinstance(r.handle(register(title(2)), ctx(1)), RegisterResponse)
    # A node that registered again after storage judged it expired is kept.
    r.handle(register(title(5), period=60), ctx(2, now=5000.0))
    assert r.forget([str(title(5))], expired_before=5000.0 + 60) == []
    assert [n.ap_title for n in r.forget([str(title(5))], expired_before=5000.0 + 61)] == [
        str(title(5))]
    # Nodes dropped from ``nodes`` directly (as the web console's tests do) free theirs too.
    del r.nodes[str(title(1))]
    assert isinstance(r.handle(register(title(3)), ctx(1)), RegisterResponse)


def test_assigned_titles_are_counted_under_the_source() -> None:
    r = registrar(max_per_source=2)
    first = r.handle(register(Uid((), relative=True)), ctx(1))
    assert first.reg_ap_title.arcs[: len(ASSIGNED_BASE)] == ASSIGNED_BASE
    r.handle(register(Uid((), relative=True)), ctx(1))
    assert code(r, register(Uid((), relative=True)), ctx(1)) == ResponseCode.ONP
    assert all(isinstance(n, Node) and n.source == "10.0.0.1" for n in r.nodes.values())


# -- wiring: the head-end's settings and options ------------------------------------------


def test_head_end_applies_its_limits_to_the_registrar(tmp_path: Any) -> None:
    from c1222.crypto.keys import KeyTable
    from c1222.headend.server import HeadEnd, HeadEndConfig

    plain = HeadEnd(HeadEndConfig(db=f"sqlite:///{tmp_path / 'a.db'}", max_nodes=5,
                                  max_registrations_per_address=2))
    assert (plain.registrar.max_nodes, plain.registrar.max_per_source) == (5, 2)
    assert not plain.registrar.protect_titles
    # The source of an association is its peer's host; an unknown link has none.
    assert plain.registrar.source_of is not None and plain.registrar.source_of(10**9) is None
    secured = HeadEnd(HeadEndConfig(db=f"sqlite:///{tmp_path / 'b.db'}", security_mode=1,
                                    keys=KeyTable.from_cli(["2:" + "00" * 16])))
    assert secured.registrar.protect_titles
    assert secured.registrar.max_per_source == 64 and secured.config.retention.max_messages


def test_headend_options_refuse_bad_limits() -> None:
    from click.testing import CliRunner

    from c1222.cli.main import cli

    for option, value in (("--max-registrations-per-address", "-1"), ("--max-nodes", "0"),
                          ("--max-messages", "-5"), ("--message-retention", "nan"),
                          ("--node-retention", "inf"), ("--prune-interval", "0")):
        result = CliRunner().invoke(cli, ["headend", "--db", "sqlite://:memory:", option, value])
        assert result.exit_code == 2, (option, value, result.output)
        assert "Traceback" not in result.output
