"""A relay's routing state, without I/O: routes learned from registrations, and the requests
it forwarded and waits to answer (design-16 decisions 5, 7 and 8; docs/network.md "Routing").

:class:`RouteTable` maps an AP title to where it is reached: the association (``link``, an
opaque key the node layer gives, e.g. a transport link id) the node's Register came over, its
native address (to reconnect when that association is gone), the relay it sits behind
(``via``, for Trace) and when the route expires (the registration period the master granted,
plus a margin: c1222-network.md "Roles"). A route is learned only from a Register *response*
— the registration authority's word — never from a request, so a hostile node cannot point a
title at itself by sending Register alone.

:class:`PendingTable` keeps the requests a relay forwarded: keyed by (outgoing link, A8,
calling title), the key a response is matched with (A4 = A8, called title = calling title),
bounded (``max_pending``: BSY beyond), each with a deadline (NETT after it). It also knows the
messages in transit by (calling title, A8): the same message arriving again on *another*
association while it is still pending is a routing loop, and the relay refuses it rather than
forwarding it around the loop forever.

Pure: ``now`` is an argument everywhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from c1222 import limits

#: Seconds a route outlives the registration period granted (the node re-registers before the
#: period ends, c1222-network.md; the margin covers a slow WAN round trip).
ROUTE_MARGIN = 60.0
#: Default caps (docs/network.md "Limits").
DEFAULT_MAX_ROUTES = 100_000
DEFAULT_MAX_PENDING = 4096
DEFAULT_MAX_PER_SOURCE = 64
#: Register node-type bit of a relay (c1222.md 7.1).
RELAY = 0x01


@dataclass
class Route:
    """Where one AP title is reached."""

    title: str  # absolute, dotted
    link: Hashable | None  # the association its Register came over (None: closed)
    native_address: bytes
    expires: float
    node_type: int = 0
    via: str | None = None  # the relay (title) it sits behind, None: attached here
    source: str | None = None  # the peer host its Register came from
    connectionless: bool = False  # registered for UDP only (connection-type bits)
    learned_at: float = 0.0


class RouteTable:
    """AP title -> :class:`Route`, bounded and aged."""

    def __init__(self, *, max_routes: int = DEFAULT_MAX_ROUTES,
                 max_per_source: int | None = DEFAULT_MAX_PER_SOURCE) -> None:
        self.max_routes = max_routes
        self.max_per_source = max_per_source
        self._routes: dict[str, Route] = {}
        # indexes, so a registration costs the same with 10 routes or 100,000
        self._relay_on: dict[Hashable, str] = {}  # link -> the relay registered over it
        self._by_source: dict[str, set[str]] = {}  # source -> titles attached from it

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._routes.values()))

    def get(self, title: str, now: float) -> Route | None:
        """The live route of ``title`` (an expired one is dropped here)."""
        route = self._routes.get(title)
        if route is not None and route.expires < now:
            self.remove(title)
            return None
        return route

    def may_learn(self, title: str, source: str | None, now: float) -> str | None:
        """Why a new registration of ``title`` from ``source`` must be refused (None: it may
        go ahead): a full table, or a source already holding ``max_per_source`` titles."""
        if title and self.get(title, now) is not None:
            return None
        if len(self._routes) >= self.max_routes:
            self.expire(now)
            if len(self._routes) >= self.max_routes:
                return f"route table full ({self.max_routes})"
        if source is not None and self.max_per_source:
            titles = self._by_source.get(source, set())
            if len(titles) >= self.max_per_source:
                for stale in [t for t in titles if (r := self._routes.get(t)) is None
                              or r.expires < now]:
                    self.remove(stale)
                titles = self._by_source.get(source, set())
            if len(titles) >= self.max_per_source:
                return f"{source} already registered {len(titles)} nodes here"
        return None

    def held_elsewhere(self, title: str, source: str | None, now: float) -> Route | None:
        """The live route of ``title`` when it was registered from another source."""
        route = self.get(title, now)
        if route is None or source is None or route.source is None or route.source == source:
            return None
        return route

    def learn(self, title: str, link: Hashable | None, native_address: bytes, period: float,
              now: float, *, node_type: int = 0, via: str | None = None,
              source: str | None = None, connectionless: bool = False) -> Route:
        self.remove(title)
        route = Route(title=title, link=link, native_address=native_address,
                      expires=now + period + ROUTE_MARGIN, node_type=node_type, via=via,
                      source=source, connectionless=connectionless, learned_at=now)
        self._routes[title] = route
        if node_type & RELAY and link is not None and via is None:
            # the relay attached over this link; those behind it registered over it too
            self._relay_on[link] = title
        if source is not None and via is None:
            self._by_source.setdefault(source, set()).add(title)
        return route

    def remove(self, title: str) -> Route | None:
        route = self._routes.pop(title, None)
        if route is None:
            return None
        if route.link is not None and self._relay_on.get(route.link) == title:
            del self._relay_on[route.link]
        titles = self._by_source.get(route.source) if route.source is not None else None
        if titles is not None:
            titles.discard(title)
            if not titles:
                del self._by_source[route.source]  # type: ignore[arg-type]
        return route

    def expire(self, now: float) -> list[Route]:
        """Drop and return the routes whose registration ran out."""
        gone = [r for r in self._routes.values() if r.expires < now]
        for route in gone:
            self.remove(route.title)
        return gone

    def link_closed(self, link: Hashable) -> list[Route]:
        """The association ``link`` closed: routes over it keep their native address (the
        relay reconnects there) but lose the link. Returns them."""
        hit = [r for r in self._routes.values() if r.link == link]
        for route in hit:
            route.link = None
        self._relay_on.pop(link, None)
        return hit

    def relay_on(self, link: Hashable, now: float) -> Route | None:
        """The relay registered over ``link``, if any (what "behind which relay" means)."""
        title = self._relay_on.get(link)
        return self.get(title, now) if title is not None else None

    def set_link(self, route: Route, link: Hashable | None) -> None:
        """``route`` is reached over ``link`` from now on (a connection the relay opened)."""
        if route.link is not None and self._relay_on.get(route.link) == route.title:
            del self._relay_on[route.link]
        route.link = link
        if link is not None and route.node_type & RELAY and route.via is None:
            self._relay_on[link] = route.title


def trace_answer(table: RouteTable, title: str, own: str, now: float) -> tuple[str, ...] | str:
    """Trace at this relay (design-16 decision 8): ``(own,)`` when ``title`` is this relay or
    attached to it directly; the relay title to ask next (a str) when it sits behind one;
    UAT is the caller's when neither (raises KeyError)."""
    if title == own:
        return (own,)
    route = table.get(title, now)
    if route is None:
        raise KeyError(title)
    if route.via is None or route.via == own:
        return (own,)
    return route.via


def trace_path(own: str, rest: Iterable[str]) -> tuple[str, ...]:
    """This relay followed by the path the next relay reported, bounded by MAX_TRACE_HOPS."""
    path = (own, *rest)
    return path[: limits.MAX_TRACE_HOPS]


# --------------------------------------------------------------------------- pending forwards


@dataclass
class Forward:
    """One request forwarded and not yet answered."""

    out_link: Hashable
    invocation_id: int  # A8 of the request, A4 of its response
    calling: str  # title_key of the request's calling title
    in_link: Hashable  # where the response goes back
    deadline: float
    request: bytes = field(repr=False, default=b"")  # the request's header source (errors)
    register: object | None = None  # the Register forwarded (route learning), if it is one
    resends: int = 0  # times a UDP resend of it was forwarded again


class PendingTable:
    """Forwarded requests awaiting their response, bounded."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._by_key: OrderedDict[tuple[Hashable, int, str], Forward] = OrderedDict()
        self._in_transit: dict[tuple[str, int], Forward] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def full(self) -> bool:
        return len(self._by_key) >= self.max_pending

    def in_transit(self, calling: str, invocation_id: int) -> Forward | None:
        """The pending forward of the message (calling title, A8), wherever it went."""
        return self._in_transit.get((calling, invocation_id))

    def add(self, forward: Forward) -> bool:
        """Remember ``forward``; False when the table is full (answer BSY)."""
        key = (forward.out_link, forward.invocation_id, forward.calling)
        if key not in self._by_key and self.full:
            return False
        self._by_key[key] = forward
        self._in_transit[(forward.calling, forward.invocation_id)] = forward
        return True

    def match(self, out_link: Hashable, invocation_id: int, called: str) -> Forward | None:
        """Take the forward a response on ``out_link`` answers (A4, its called title)."""
        forward = self._by_key.pop((out_link, invocation_id, called), None)
        if forward is not None:
            self._untransit(forward)
        return forward

    def _untransit(self, forward: Forward) -> None:
        key = (forward.calling, forward.invocation_id)
        if self._in_transit.get(key) is forward:
            del self._in_transit[key]

    def expired(self, now: float) -> list[Forward]:
        """Take every forward past its deadline (each gets NETT)."""
        gone = [f for f in self._by_key.values() if f.deadline < now]
        for forward in gone:
            del self._by_key[(forward.out_link, forward.invocation_id, forward.calling)]
            self._untransit(forward)
        return gone

    def link_closed(self, link: Hashable) -> tuple[list[Forward], list[Forward]]:
        """Take the forwards sent out on ``link`` (each gets NETR) and those that came in on
        it (their answer has nowhere to go). Returns (out, in)."""
        out, inn = [], []
        for key, forward in list(self._by_key.items()):
            if forward.out_link == link:
                out.append(forward)
            elif forward.in_link == link:
                inn.append(forward)
            else:
                continue
            del self._by_key[key]
            self._untransit(forward)
        return out, inn
