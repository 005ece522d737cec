"""Hypothesis strategies for every C12.22 message the codec knows."""

from __future__ import annotations

from hypothesis import strategies as st

from c1222.codec import services as sv
from c1222.codec.acse import Apdu
from c1222.codec.ber import Uid
from c1222.codec.epsem import Epsem

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
invocation_ids = st.integers(0, 0xFFFFFFFF)
arcs = st.integers(0, 2**35 - 1)


@st.composite
def absolute_uids(draw: st.DrawFn) -> Uid:
    first = draw(st.integers(0, 2))
    second = draw(st.integers(0, 39)) if first < 2 else draw(st.integers(0, 1000))
    return Uid((first, second, *draw(st.lists(arcs, max_size=10))))


relative_uids = st.builds(lambda a: Uid(tuple(a), relative=True), st.lists(arcs, max_size=10))
uids = st.one_of(absolute_uids(), relative_uids)

table_data = st.one_of(
    st.builds(sv.TableData, st.binary(max_size=300)),
    st.builds(lambda d, c: sv.TableData(d, bytes([(sv.checksum(d) + c) & 0xFF])),
              st.binary(max_size=50), st.integers(1, 255)),
)
indices = st.lists(u16, min_size=1, max_size=9).map(tuple)

requests = st.one_of(
    st.sampled_from([sv.IdentifyRequest(), sv.TerminateRequest(), sv.DisconnectRequest(),
                     sv.LogoffRequest(), sv.DefaultReadRequest()]),
    st.builds(sv.DeregisterRequest, uids),
    st.builds(sv.ResolveRequest, uids),
    st.builds(sv.TraceRequest, uids),
    st.builds(lambda nt, ct, dc, t, s, a, p, pat: sv.RegisterRequest(
        nt | (0x80 if pat is not None else 0), ct, dc, t, s, a, p, pat),
        st.integers(0, 0x7F), u8, st.binary(min_size=4, max_size=4), uids, uids,
        st.binary(max_size=40), u24, st.none() | st.binary(max_size=20)),
    st.builds(sv.FullReadRequest, u16),
    st.builds(sv.PartialReadIndexRequest, u16, indices, u16),
    st.builds(sv.PartialReadOffsetRequest, u16, u24, u16),
    st.builds(sv.FullWriteRequest, u16, table_data),
    st.builds(sv.PartialWriteIndexRequest, u16, indices, table_data),
    st.builds(sv.PartialWriteOffsetRequest, u16, u24, table_data),
    st.builds(sv.LogonRequest, u16, st.binary(min_size=10, max_size=10), u16),
    st.builds(sv.SecurityRequest, st.binary(min_size=20, max_size=20), st.none() | u16),
    st.builds(sv.WaitRequest, u8),
    st.builds(sv.UnknownRequest, st.sampled_from([0x23, 0x3A, 0x4E, 0x53, 0x60, 0x71, 0xFF]),
              st.binary(max_size=20)),
)

error_responses = st.one_of(
    st.builds(lambda c: sv.ErrorResponse(response_code=c), st.integers(1, 0x12)),
    st.builds(lambda c, m: sv.ErrorResponse(response_code=c, max_size=m),
              st.sampled_from([0x0F, 0x10]), st.integers(0, 0xFFFFFFFF)),
)


def response_for(request: sv.Request) -> st.SearchStrategy[sv.Response]:
    """A response that answers ``request`` (typed as the decoder types it)."""
    if isinstance(request, (sv.FullReadRequest, sv.PartialReadIndexRequest,
                            sv.PartialReadOffsetRequest, sv.DefaultReadRequest)):
        ok = st.builds(lambda td: sv.ReadResponse(table_data=td), table_data)
    elif isinstance(request, sv.IdentifyRequest):
        ok = st.builds(
            lambda std, ver, rev, mech, sc, dc, ident: sv.IdentifyResponse(
                std=std, ver=ver, rev=rev, security_mechanisms=tuple(mech), session_ctrl=sc,
                device_class=dc, device_identity=ident),
            u8, u8, u8, st.lists(uids, max_size=3), st.none() | u8, st.none() | uids,
            st.none() | st.builds(sv.DeviceIdentity, u8, st.binary(max_size=30)))
    elif isinstance(request, sv.LogonRequest):
        ok = st.builds(lambda t: sv.LogonResponse(resp_session_idle_timeout=t), u16)
    elif isinstance(request, sv.RegisterRequest):
        ok = st.builds(lambda t, d, p, i: sv.RegisterResponse(
            reg_ap_title=t, reg_delay=d, reg_period=p, reg_info=i), uids, u16, u24, u8)
    elif isinstance(request, sv.ResolveRequest):
        ok = st.builds(lambda a: sv.ResolveResponse(native_address=a), st.binary(max_size=40))
    elif isinstance(request, sv.TraceRequest):
        ok = st.builds(lambda t: sv.TraceResponse(ap_titles=tuple(t)), st.lists(uids, max_size=5))
    elif isinstance(request, sv.UnknownRequest):
        ok = st.builds(lambda d: sv.RawResponse(data=d), st.binary(max_size=20))
    else:
        ok = st.just(sv.OkResponse())
    return st.one_of(ok, error_responses)


@st.composite
def epsems(draw: st.DrawFn, services: tuple[sv.Service, ...]) -> Epsem:
    mode = draw(st.sampled_from([0, 0, 1, 2]))
    ed_class = draw(st.none() | st.binary(min_size=4, max_size=4))
    flags = dict(security_mode=mode, response_control=draw(st.integers(0, 2)),
                 recovery_session=draw(st.booleans()), proxy_service_used=draw(st.booleans()))
    mac = draw(st.binary(min_size=4, max_size=4)) if mode else None
    if mode == 2:
        return Epsem(ed_class_included=ed_class is not None, mac=mac,
                     ciphertext=draw(st.binary(max_size=100)), **flags)
    return Epsem(services, ed_class=ed_class, mac=mac, **flags)


@st.composite
def apdus(draw: st.DrawFn, services: tuple[sv.Service, ...], response_to: int | None = None
          ) -> Apdu:
    secured = draw(st.booleans())
    return Apdu(
        draw(epsems(services)),
        calling_ap_invocation_id=draw(invocation_ids),
        called_ap_title=draw(st.none() | uids),
        calling_ap_title=draw(st.none() | uids),
        called_ap_invocation_id=response_to,
        calling_ae_qualifier=draw(st.none() | st.integers(0, 7)),
        aso_context=draw(st.none() | absolute_uids()),
        mechanism_name=draw(st.none() | absolute_uids()),
        key_id=draw(u8) if secured else None,
        iv=draw(st.binary(min_size=4, max_size=4)) if secured else None,
        called_ae_qualifier=draw(st.none() | invocation_ids),
        indirect_reference=draw(st.none() | invocation_ids),
    )


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Apdu, Apdu, list[sv.Request]]:
    """A request APDU, the response APDU answering it, and the request services."""
    reqs = draw(st.lists(requests, min_size=1, max_size=4))
    resps = tuple(draw(response_for(r)) for r in reqs)
    request = draw(apdus(tuple(reqs)))
    response = draw(apdus(resps, response_to=request.calling_ap_invocation_id))
    return request, response, reqs
