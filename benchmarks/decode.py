"""Decode speed: `c1222 decode --json` beside `tshark -T fields` on the same 100,000-message capture.

Run: `.venv/bin/python benchmarks/decode.py [--messages N]`. Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

from c1222.codec import samples  # noqa: E402
from c1222.transport.pcap import PcapWriter  # noqa: E402


def build_capture(path: Path, count: int) -> int:
    """``count`` messages: every sample exchange in turn, with fresh invocation ids, on 50 connections."""
    templates = samples.messages()
    written = 0
    with PcapWriter.open(path, start_time=1_700_000_000.0, time_step=0.0001) as writer:
        conns = [writer.tcp_connection(("10.0.%d.%d" % (i // 250, i % 250 + 1), 40000 + i),
                                       ("10.9.0.1", 1153)) for i in range(50)]
        while written < count:
            for i in range(0, len(templates), 2):
                if written >= count:
                    break
                conn = conns[(written // 2) % len(conns)]
                n = written // 2
                req = replace(templates[i], calling_ap_invocation_id=1 + n % 0x7FFFFFFF)
                resp = replace(templates[i + 1], called_ap_invocation_id=req.calling_ap_invocation_id,
                               calling_ap_invocation_id=1 + (n * 7) % 0x7FFFFFFF)
                conn.send(req.encode())
                written += 1
                if written < count:
                    conn.send(resp.encode(), from_client=False)
                    written += 1
    return written


def stages(pcap: Path) -> list[tuple[str, float]]:
    """Where our time goes: each stage of `decode --json` measured alone, in this process.

    The collector is paused: holding 100,000 decoded messages at once (which the streaming
    command never does) would otherwise bill its full passes to whichever stage runs.
    """
    import gc
    import json

    from c1222.codec import text
    from c1222.session.dissect import Dissector
    from c1222.transport.pcap import read_capture

    gc.disable()
    start = time.perf_counter()
    records = list(read_capture(pcap))
    t_read = time.perf_counter() - start
    dissector = Dissector()
    start = time.perf_counter()
    apdus = [dissector.dissect(r.data, r.src, r.dst).apdu for r in records]
    t_decode = time.perf_counter() - start
    start = time.perf_counter()
    values = [text.to_json(a) for a in apdus]
    t_json = time.perf_counter() - start
    start = time.perf_counter()
    encode = json.JSONEncoder(separators=(",", ":")).encode
    "\n".join(encode(v) for v in values)
    t_dump = time.perf_counter() - start
    gc.enable()
    return [("read pcap and reassemble TCP (transport.pcap)", t_read),
            ("decode ACSE + EPSEM + services, pair responses (session.dissect)", t_decode),
            ("build the canonical JSON values (codec.text)", t_json),
            ("serialise to JSON text (json, C encoder)", t_dump)]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    start = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=True)
    return time.perf_counter() - start, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    if tshark is None:
        sys.exit("tshark is needed as the reference (apt-get install tshark)")
    c1222 = str(Path(sys.executable).with_name("c1222"))
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "mixed.pcap"
        count = build_capture(pcap, args.messages)
        size = pcap.stat().st_size
        env = {**os.environ, "HOME": tmp, "WIRESHARK_CONFIG_DIR": tmp}
        ours, one_core, theirs = [], [], []
        tshark_cmd = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-e", "c1222.cmd",
                      "-e", "c1222.err", "-Y", "c1222"]
        loads = [os.getloadavg()[0]]
        workers = min(len(os.sched_getaffinity(0)), 8)
        for _ in range(args.runs):  # interleaved: A B C A B C, so load bursts hit all three
            t, out = timed([c1222, "decode", "--json", "--jobs", str(workers), str(pcap)])
            ours.append(t)
            assert out.count(b"\n") == count, (out.count(b"\n"), count)
            t, out_one = timed([c1222, "decode", "--json", "--jobs", "1", str(pcap)])
            one_core.append(t)
            assert out_one == out
            t, out = timed(tshark_cmd, env)
            theirs.append(t)
            loads.append(os.getloadavg()[0])
        split = stages(pcap)
    best_ours, best_one, best_theirs = min(ours), min(one_core), min(theirs)
    ratios = sorted(b / a for a, b in zip(ours, theirs))
    ratios_one = sorted(b / a for a, b in zip(one_core, theirs))
    rows = [
        f"Capture: {count:,} C12.22 messages (every service of `c1222.codec.samples`, requests "
        f"and responses) on 50 TCP connections, {size / 1e6:.1f} MB. Best of {args.runs} runs, "
        f"the three commands interleaved; load average {min(loads):.1f} to {max(loads):.1f} "
        f"during the runs ({os.cpu_count()} cores shared with other work).",
        "",
        "| command | seconds | messages/s |",
        "|---|---:|---:|",
        f"| `c1222 decode --json --jobs {workers}` (worker processes, split by connection) | "
        f"{best_ours:.2f} | {count / best_ours:,.0f} |",
        f"| `c1222 decode --json --jobs 1` (one process; the default below 4 cores) | "
        f"{best_one:.2f} | "
        f"{count / best_one:,.0f} |",
        f"| `tshark -T fields -e c1222.cmd -e c1222.err -Y c1222` | {best_theirs:.2f} | "
        f"{count / best_theirs:,.0f} |",
        "",
        f"Ratio (tshark time / ours, median of the side-by-side runs): "
        f"**{statistics.median(ratios):.2f}x** with workers, "
        f"**{statistics.median(ratios_one):.2f}x** on one core (above 1: we are faster).",
        "",
        "Where our time goes on one core (each stage alone, same capture, in one process):",
        "",
        "| stage | seconds | µs/message |",
        "|---|---:|---:|",
        *[f"| {name} | {t:.2f} | {t / count * 1e6:.1f} |" for name, t in split],
        f"| process start-up, imports, output, the rest | "
        f"{max(0.0, best_one - sum(t for _, t in split)):.2f} | |",
    ]
    write_section("Decoding a capture (benchmarks/decode.py)", [machine(), "", *rows])
    print("\n".join(rows))


if __name__ == "__main__":
    main()
