"""A secured request's building blocks, each timed alone, against the whole
``Responder.receive`` on the same kind of request, in one process: how much of the responder's
time is the work itself (header decode, N, EAX', the replay window, the services, the table
read, the answer's encoding) and how much is what joins the stages (the objects passed between
them, the calls). The difference bounds what serving the request as one compiled unit could
save (BENCHMARKS.md, "Issue 11, session 8").

The request is benchmarks/meter.py's: Security (operator password) + Full Read of Table 28,
from the same head-end, each with a fresh invocation id and IV. Each block runs on the values
the block before it produced for one request; the replay window gets a fresh message id every
call. CPU of the blocks as compiled, best of 7 runs each, plus a few tens of nanoseconds of
timeit's call per block.

Run: `.venv/bin/python benchmarks/responder_blocks.py [--mode 1|2]`. Prints; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from meter import KEYS, build

from c1222.build import describe
from c1222.codec import acse
from c1222.codec.epsem import FLAG_ED_CLASS_INCLUDED, MAC_SIZE, decode_body, encode_body
from c1222.codec.services import FullReadRequest, SecurityRequest
from c1222.crypto import policy
from c1222.crypto.replay import MessageId, ReplayWindow
from c1222.meter.config import MeterConfig
from c1222.meter.node import Meter
from c1222.session.responder import ServiceContext

CALLS = 20_000
WHOLE = 200  # requests per timed run of the whole receive (7 runs: 1,400 fresh requests)


def best(step: Callable[[], object], number: int = CALLS) -> float:
    """Microseconds per call, the best of 7 runs."""
    return min(timeit.repeat(step, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", type=int, choices=(1, 2), default=2)
    args = parser.parse_args()
    node = Meter(MeterConfig(security_mode=args.mode, keys=KEYS))
    responder = node.responder
    _, pending = build(args.mode, 1 + 7 * WHOLE)
    data = pending[0].data
    now = time.time()

    rows: list[tuple[str, float]] = []
    header = acse.decode_header(data)
    rows.append(("decode the header", best(lambda: acse.decode_header(data))))
    key_id, iv = header.key_id, header.iv
    assert key_id is not None and iv is not None
    cleartext = policy._cleartext_of(data, header, key_id, iv)
    rows.append(("N of the request",
                 best(lambda: policy._cleartext_of(data, header, key_id, iv))))
    cipher = KEYS.cipher(key_id, header.calling_ap_title)
    ctl_pos, end = header.spans.epsem
    body, mac = data[ctl_pos + 1 : end - MAC_SIZE], data[end - MAC_SIZE : end]
    if args.mode == 2:
        rows.append(("EAX' decrypt", best(lambda: cipher.decrypt(cleartext, body, mac))))
        plain = cipher.decrypt(cleartext, body, mac)
    else:
        rows.append(("EAX' verify", best(lambda: cipher.verify(cleartext, body, mac))))
        plain = body
    title = str(header.calling_ap_title.absolute()) if header.calling_ap_title else ""
    # messages arriving at 20,000 a second, each with the current second as its IV
    arrivals = iter([(MessageId(title, key_id, int(now + k / 20_000).to_bytes(4, "big"), k),
                      now + k / 20_000) for k in range(8 * CALLS)])
    window = ReplayWindow(iv_tolerance=900.0)
    rows.append(("replay window accept", best(lambda: window.accept(*next(arrivals)))))
    included = bool(data[ctl_pos] & FLAG_ED_CLASS_INCLUDED)
    rows.append(("decode the services",
                 best(lambda: decode_body(plain, 0, len(plain), included, None, "epsem"))))
    apdu = policy.unprotect(data, KEYS, header=header)
    security, read = apdu.epsem.services
    assert isinstance(security, SecurityRequest) and isinstance(read, FullReadRequest)
    services = node.services
    rows.append(("authenticate the password",
                 best(lambda: services.authenticate(security.user_id or 0, security.password))))
    principal = services.authenticate(security.user_id or 0, security.password)
    clock = node.clock()
    rows.append(("read Table 28 (access checked)",
                 best(lambda: node.store.full_read(read.table_id, principal=principal, now=clock))))
    context = ServiceContext(1, now, apdu, None, None)
    answers = [responder._serve(request, context) for request in apdu.epsem.services]
    _, response = responder._answer(apdu, answers, secured=True, digest=None, now=now)
    assert response is not None
    rows.append(("encode the answer's services", best(lambda: encode_body(response.epsem))))
    plaintext = encode_body(response.epsem)
    rows.append(("the answer's header elements", best(lambda: acse.header_elements(response))))
    nonces = responder.nonces
    rows.append(("nonces of the answer (A8, IV)",
                 best(lambda: (nonces.invocation_id(), nonces.iv()))))
    if args.mode == 2:
        rows.append(("EAX' encrypt", best(lambda: cipher.encrypt(cleartext, plaintext))))
    else:
        rows.append(("EAX' authenticate", best(lambda: cipher.authenticate(cleartext,
                                                                           plaintext))))

    fresh = iter(p.data for p in pending[1:])
    answered: set[int] = set()

    def receive() -> None:
        reply = responder.receive(next(fresh), 1, time.time())
        answered.add(len(reply.data or b""))

    whole = best(receive, WHOLE)
    assert 0 not in answered, "a request was not answered"
    blocks = sum(cost for _, cost in rows)
    print(f"{describe()}; mode {args.mode}; µs per request")
    for name, cost in rows:
        print(f"  {name:34s} {cost:6.2f}")
    print(f"  {'the blocks together':34s} {blocks:6.2f}")
    print(f"  {'Responder.receive, whole':34s} {whole:6.2f}  "
          f"(joining the stages: {whole - blocks:.2f}, {1 - blocks / whole:.0%})")


if __name__ == "__main__":
    main()
