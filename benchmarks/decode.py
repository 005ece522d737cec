"""Decode speed: `c1222 decode --json` beside `tshark -T fields` on the same 100,000-message capture.

Run: `.venv/bin/python benchmarks/decode.py [--messages N] [--runs N] [--no-compile]`. Writes its
section of BENCHMARKS.md. Ours runs as `make` built this checkout (compiled with mypyc; when the
checkout is pure Python, from a copy compiled in a temporary directory, unless --no-compile or
mypyc is missing) and from a pure-Python copy of it (what a plain `pip install` gives); every
command runs in turn, once per round, so a load burst hits all of them.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _builds import pure_src  # noqa: E402
from _report import machine, write_section  # noqa: E402

from c1222 import build as package_build  # noqa: E402
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
    """Where our time goes: each stage of `decode --json` measured alone, in this process
    (CPU time, best of 3).

    The collector is paused: holding 100,000 decoded messages at once (which the streaming
    command never does) would otherwise bill its full passes to whichever stage runs.
    """
    import gc

    from c1222.cli.codec import json_lines, read_sources, record
    from c1222.codec import text
    from c1222.session.dissect import Dissector

    best: dict[str, float] = {}
    clock = time.process_time
    gc.disable()
    try:
        for _ in range(3):
            start = clock()
            sources = list(read_sources([pcap], (1153,), True))
            read = clock() - start
            dissector = Dissector()
            start = clock()
            results = [dissector.dissect(s.data, s.src, s.dst) for s in sources]
            decode = clock() - start
            start = clock()
            for r in results:
                text.to_json(r.apdu)
            values = clock() - start
            records = [record(s, r) for s, r in zip(sources, results)]
            start = clock()
            json_lines(records)
            dump = clock() - start
            for name, t in (("read", read), ("decode", decode), ("values", values),
                            ("text", dump)):
                best[name] = min(best.get(name, t), t)
            del sources, results, records
            gc.collect()
    finally:
        gc.enable()
    return [("read pcap and reassemble TCP (transport.pcap)", best["read"]),
            ("decode ACSE + EPSEM + services, pair responses (session.dissect)", best["decode"]),
            ("build the canonical JSON values (codec.text)", best["values"]),
            ("serialise to JSON text (msgspec)", best["text"])]


def compiled_copy(root: Path, into: Path) -> Path | None:
    """A copy of ``root``/src with setup.py's COMPILED modules built by mypyc; None without it."""
    if shutil.which("mypyc", path=str(Path(sys.executable).parent)) is None:
        return None
    tree = ast.parse((root / "setup.py").read_text())
    modules = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED")
    src = into / "src"
    shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    mypyc = str(Path(sys.executable).with_name("mypyc"))
    start = time.perf_counter()
    subprocess.run([mypyc, "--ignore-missing-imports", *(m.removeprefix("src/") for m in modules)],
                   cwd=src, check=True, stdout=subprocess.DEVNULL)
    print(f"compiled {len(modules)} modules in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return src


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds (user + system of the child and its workers), output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true",
                        help="only the pure Python build (no mypyc copy)")
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    if tshark is None:
        sys.exit("tshark is needed as the reference (apt-get install tshark)")
    root = Path(__file__).resolve().parents[1]
    workers = min(len(os.sched_getaffinity(0)), 8)
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "mixed.pcap"
        count = build_capture(pcap, args.messages)
        size = pcap.stat().st_size
        builds = {"pure Python": pure_src(Path(tmp))}
        compiled = root / "src" if package_build.compiled() else \
            None if args.no_compile else compiled_copy(root, Path(tmp) / "compiled")
        if compiled is not None:
            builds["compiled (mypyc)"] = compiled
        env = {**os.environ, "HOME": tmp, "WIRESHARK_CONFIG_DIR": tmp}
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "tshark": ([tshark, "-n", "-r", str(pcap), "-T", "fields", "-e", "c1222.cmd",
                        "-e", "c1222.err", "-Y", "c1222"], env)}
        for build, src in builds.items():
            for jobs in (1, workers):
                commands[f"{build}, --jobs {jobs}"] = (
                    [sys.executable, "-m", "c1222.cli", "decode", "--json", "--jobs", str(jobs),
                     str(pcap)], {**env, "PYTHONPATH": str(src)})
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        loads = [os.getloadavg()[0]]
        reference = None
        for _ in range(args.runs):  # interleaved: A B C ... A B C, so load bursts hit all
            for name, (cmd, cmd_env) in commands.items():
                wall, cpu, out = timed(cmd, cmd_env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name != "tshark":
                    assert out.count(b"\n") == count, (name, out.count(b"\n"), count)
                    reference = reference or out
                    assert out == reference, f"{name}: other output than the first build"
            loads.append(os.getloadavg()[0])
        split = stages(pcap)
    rows = [
        f"Capture: {count:,} C12.22 messages (every service of `c1222.codec.samples`, requests "
        f"and responses) on 50 TCP connections, {size / 1e6:.1f} MB. Every command once per "
        f"round, {args.runs} rounds; best wall time and best CPU time (user + system, workers "
        f"included) of each; load average {min(loads):.1f} to {max(loads):.1f} during the runs "
        f"({os.cpu_count()} cores shared with other work). Ours: `python -m c1222.cli decode "
        f"--json --jobs N`, the same bytes from every build.",
        "",
        "| command | wall s | CPU s | messages/s (wall) | ratio, wall (tshark / ours) "
        "| ratio, CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in commands:
        ratio = statistics.median(t / o for t, o in zip(walls["tshark"], walls[name]))
        ratio_cpu = statistics.median(t / o for t, o in zip(cpus["tshark"], cpus[name]))
        label = "`tshark -T fields -e c1222.cmd -e c1222.err -Y c1222`" if name == "tshark" \
            else f"ours, {name}"
        rows.append(f"| {label} | {min(walls[name]):.2f} | {min(cpus[name]):.2f} | "
                    f"{count / min(walls[name]):,.0f} | {ratio:.2f}x | {ratio_cpu:.2f}x |")
    one = f"{'compiled (mypyc)' if package_build.compiled() else 'pure Python'}, --jobs 1"
    rows += [
        "",
        "Ratios are medians over the rounds of tshark's time / ours in the same round (above 1: "
        "we are faster). CPU time is what one core would need; wall time on 2 busy cores "
        "depends on what else runs.",
        "",
        f"Where our time goes on one core (this checkout's build: "
        f"{package_build.describe()}; each stage alone in one process, CPU time, best of 3):",
        "",
        "| stage | seconds | µs/message |",
        "|---|---:|---:|",
        *[f"| {name} | {t:.2f} | {t / count * 1e6:.1f} |" for name, t in split],
        f"| process start-up, imports, writing, the rest | "
        f"{max(0.0, min(cpus[one]) - sum(t for _, t in split)):.2f} | |",
    ]
    write_section("Decoding a capture (benchmarks/decode.py)", [machine(), "", *rows])
    print("\n".join(rows))


if __name__ == "__main__":
    main()
