"""What tshark should report for a message we decoded or encoded, field by field.

Wireshark 4.0 decodes parameters only for some services (digest 9, row 8);
for the rest it shows the bytes after the code or status as ``c1222.data``.
"""

from __future__ import annotations

from collections import defaultdict

from c1222.codec import services as sv
from c1222.codec.acse import Apdu

# Requests whose parameters tshark 4.0 decodes into fields of their own.
_TSHARK_DECODES = {0x20, 0x21, 0x22, 0x30, 0x3E, 0x3F, 0x40, 0x4F, 0x50, 0x51, 0x52, 0x70}


def _title(out: dict[str, list[str]], name: str, title) -> None:
    if title is not None:
        kind = "rel" if title.relative else "abs"
        out[f"c1222.{name}_{kind}"].append(str(title))


def expected_fields(apdu: Apdu) -> dict[str, list[str]]:
    """tshark field name -> values, as tshark 4.0 prints them in -T json."""
    out: dict[str, list[str]] = defaultdict(list)
    _title(out, "called_ap_title", apdu.called_ap_title)
    _title(out, "calling_ap_title", apdu.calling_ap_title)
    if apdu.called_ap_invocation_id is not None:
        out["c1222.called_AP_invocation_id"].append(str(apdu.called_ap_invocation_id))
    out["c1222.calling_AP_invocation_id"].append(str(apdu.calling_ap_invocation_id))
    if apdu.calling_ae_qualifier is not None:
        out["c1222.calling_AE_qualifier"].append(str(apdu.calling_ae_qualifier))
    if apdu.key_id is not None:
        out["c1222.key_id_element"].append(f"{apdu.key_id:02x}")
    if apdu.iv is not None:
        out["c1222.iv_element"].append(apdu.iv.hex())
    epsem = apdu.epsem
    out["c1222.epsem.flags"].append(f"0x{epsem.control:02x}")
    if epsem.mac is not None:
        out["c1222.epsem.mac"].append(epsem.mac.hex())
    if epsem.ciphertext is not None:
        return dict(out)
    if epsem.ed_class is not None:
        out["c1222.epsem.edclass"].append(epsem.ed_class.hex())
    for service in epsem.services:
        if isinstance(service, sv.Request):
            _request(out, service)
        else:
            out["c1222.err"].append(f"0x{service.response_code:02x}")
            params = service.encode_parameters()
            if params:
                out["c1222.data"].append(params.hex())
    return dict(out)


def _request(out: dict[str, list[str]], req: sv.Request) -> None:
    out["c1222.cmd"].append(f"0x{req.code:02x}")
    if req.code not in _TSHARK_DECODES:
        params = req.encode_parameters()
        if params:
            out["c1222.data"].append(params.hex())
    elif isinstance(req, sv.FullReadRequest):
        out["c1222.read.table"].append(str(req.table_id))
    elif isinstance(req, sv.PartialReadOffsetRequest):
        out["c1222.read.table"].append(str(req.table_id))
        out["c1222.read.offset"].append(str(req.offset))
        out["c1222.read.count"].append(str(req.octet_count))
    elif isinstance(req, (sv.FullWriteRequest, sv.PartialWriteOffsetRequest)):
        out["c1222.write.table"].append(str(req.table_id))
        if isinstance(req, sv.PartialWriteOffsetRequest):
            out["c1222.write.offset"].append(str(req.offset))
        if req.table_id != 7:  # tshark decodes a table-7 write as a procedure call instead
            out["c1222.write.data"].append(req.table_data.data.hex())
        out["c1222.write.chksum"].append(str(req.table_data.encode()[-1]))
    elif isinstance(req, (sv.LogonRequest, sv.SecurityRequest)):
        if req.user_id is not None:  # tshark shows a Security user id as the logon id
            out["c1222.logon.id"].append(str(req.user_id))
    elif isinstance(req, sv.WaitRequest):
        out["c1222.wait.seconds"].append(str(req.seconds))


FIELDS = sorted({
    "c1222.called_ap_title_abs", "c1222.called_ap_title_rel", "c1222.calling_ap_title_abs",
    "c1222.calling_ap_title_rel", "c1222.called_AP_invocation_id",
    "c1222.calling_AP_invocation_id", "c1222.calling_AE_qualifier", "c1222.key_id_element",
    "c1222.iv_element", "c1222.epsem.flags", "c1222.epsem.mac", "c1222.epsem.edclass",
    "c1222.cmd", "c1222.err", "c1222.data", "c1222.read.table", "c1222.read.offset",
    "c1222.read.count", "c1222.write.table", "c1222.write.offset", "c1222.write.data",
    "c1222.write.chksum", "c1222.logon.id", "c1222.wait.seconds",
})


_NUMERIC = {"c1222.read.table", "c1222.read.offset", "c1222.read.count", "c1222.write.table",
            "c1222.write.offset", "c1222.write.chksum", "c1222.logon.id", "c1222.wait.seconds",
            "c1222.called_AP_invocation_id", "c1222.calling_AP_invocation_id",
            "c1222.calling_AE_qualifier"}


def differences(apdus: list[Apdu], row: dict[str, list[str]]) -> dict[str, tuple]:
    """Fields where tshark's row disagrees with what the APDUs of one frame carry."""
    want: dict[str, list[str]] = defaultdict(list)
    for apdu in apdus:
        for name, values in expected_fields(apdu).items():
            want[name] += values
    diffs = {}
    for name in FIELDS:
        got = row.get(name, [])
        if name in _NUMERIC:
            got = [str(int(v, 0)) for v in got]  # tshark writes some as hex, some decimal
        if sorted(got) != sorted(want.get(name, [])):
            diffs[name] = (want.get(name, []), got)
    return diffs
