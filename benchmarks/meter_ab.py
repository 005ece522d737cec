r"""Two meter builds side by side: this checkout as built, and another checkout's ``src``
(another commit, compiled or not), served in turn with the echo server and our Endpoint in
every round, the client and the servers pinned as in benchmarks/meter.py.

What a change to the serving path is measured with: the server's CPU per request is the steady
figure (BENCHMARKS.md, "Issue 11: the serving path"); the rates and their ratios are printed
too. Writes nothing to BENCHMARKS.md.

Run, for a base commit REV (compiled with this checkout's mypyc, as `make` builds):
    git worktree add /tmp/base REV
    (cd /tmp/base/src && $OLDPWD/.venv/bin/python -m mypyc --ignore-missing-imports \
        $(sed -n 's/^ *"src\/\(c1222\/[^"]*\.py\)",.*/\1/p' ../setup.py) \
        && find . -name '*.so' -exec touch {} +)
    .venv/bin/python benchmarks/meter_ab.py /tmp/base/src [--mode 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meter import (
    Server,
    build,
    cores,
    echo_server,
    endpoint_server,
    load,
    meter_server,
    pin,
    verify,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base", type=Path, help="the other checkout's src directory")
    parser.add_argument("--mode", type=int, choices=(0, 1, 2), default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (args.base / "c1222").is_dir():
        parser.error(f"{args.base} holds no c1222 package")
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[str, Server] = {}
        try:
            servers["base"] = meter_server(args.mode, f"{tmp}/base", args.base)
            servers["this"] = meter_server(args.mode, f"{tmp}/this")
            requester, warm = build(args.mode, 200)
            half = len(warm) // 2
            load(servers["base"].address, [p.data for p in warm[:half]], 1)
            recorded = load(servers["this"].address, [p.data for p in warm[half:]], 1).answers[-1]
            servers["echo"] = echo_server(recorded)
            servers["endpoint"] = endpoint_server(recorded)
            placed = cores()
            if placed is not None:
                pin(*placed, list(servers.values()))
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpus: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, server in servers.items():
                    requester, pending = build(args.mode, args.requests)
                    before = server.cpu()
                    run = load(server.address, [p.data for p in pending], args.connections)
                    cpus[name].append((server.cpu() - before) / args.requests * 1e6)
                    rates[name].append(run.rate)
                    if name in ("base", "this"):
                        verify(requester, pending, run.answers)
        finally:
            for server in servers.values():
                server.stop()
    print(f"mode {args.mode}, {args.connections} connections, {args.requests:,} requests x "
          f"{args.rounds} rounds, {'pinned ' + str(placed) if placed else 'not pinned'}")
    for name in servers:
        print(f"{name:9s} CPU µs/request median {statistics.median(cpus[name]):6.1f} "
              f"(least {min(cpus[name]):6.1f})   rate median {statistics.median(rates[name]):9,.0f}/s")
    for name in ("base", "this"):
        ratios = [a / b for a, b in zip(rates[name], rates["echo"], strict=True)]
        shares = [a / b for a, b in zip(cpus["echo"], cpus[name], strict=True)]
        print(f"{name:9s} rate / echo rate, median of rounds {statistics.median(ratios):.0%}; "
              f"echo CPU / its CPU {statistics.median(shares):.0%}")


if __name__ == "__main__":
    main()
