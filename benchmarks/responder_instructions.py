"""Instructions per request of the meter's responder, counted by callgrind: the figure that
holds still on a shared machine.

Timings on the project's 2-core machines move by tens of per cent between identical runs
(BENCHMARKS.md, "Issue 11"); valgrind's count of the instructions the same code executes on the
same requests moves by well under 1 %. This counts ``Responder.receive`` of an in-process meter
(no state directory, as the responder-alone figure of benchmarks/meter.py) on
benchmarks/meter.py's request, Security (operator password) + Full Read of Table 28, each with
a fresh invocation id and IV; per request, by stage. The reference, counted in the same run:
the instructions of `cryptography`'s own cipher calls inside the request (its six AES
``update`` calls in mode 2: what EAX' costs through that library at the least).

A count, not a time: user-space instructions only (the kernel, cache misses and waits are not
in it), so it judges a change to the secured path, not a rate. ``--base SRC`` counts another
checkout's compiled ``src`` on the same requests, side by side (built as benchmarks/meter_ab.py
says); with it the script only prints. Without it, the figures go to BENCHMARKS.md.

Needs valgrind (Debian package ``valgrind``) and the compiled build (``make``): the count is
switched on by the compiled ``receive``'s symbol. About a minute per mode and build.

Run: `.venv/bin/python benchmarks/responder_instructions.py [--mode 0 --mode 2] [--base SRC]`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section

THIS_SRC = Path(__file__).resolve().parents[1] / "src"
#: The compiled ``Responder.receive`` as Python calls it: collection is on inside it only.
RECEIVE = "CPyPy_responder___Responder___receive"
#: (row, callgrind symbols summed) of the stages reported, each inclusive of what it calls.
STAGES = (
    ("decode the header (A2 checked on it)", ("CPyDef_acse___decode_header",)),
    ("unprotect: MAC, decryption, replay window, services decoded",
     ("CPyDef_policy___unprotect",)),
    ("  of which the replay window", ("CPyDef_replay___ReplayWindow___accept",)),
    ("serve the services (password, Table 28 read)", ("CPyDef_responder___Responder____serve",)),
    ("the answer: encode and protect", ("CPyDef_responder___Responder____answer",)),
    # in unprotect and in the answer; mode 1's verify calls authenticate, which counts both
    ("EAX' both ways (mode 2: decrypt + encrypt; mode 1: verify + authenticate)",
     ("CPyDef_eax_prime___EaxPrime___decrypt", "CPyDef_eax_prime___EaxPrime___encrypt",
      "CPyDef_eax_prime___EaxPrime___authenticate")),
)
#: `cryptography`'s cipher-context ``update`` (its Rust body, OpenSSL included).
CRYPTO_UPDATE = re.compile(r"PyCipherContext>::__pymethod_update__$")
ROW = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+)")


def child(mode: int, requests_file: Path, src: Path, key: str) -> None:
    """Serve the pickled requests with one meter's responder (run under valgrind)."""
    # Not through benchmarks/meter.py, which puts this checkout's src first on sys.path: the
    # compiled modules share one extension, found on sys.path, so the build counted is the
    # one PYTHONPATH names only if nothing else is put before it.
    from c1222.crypto.keys import KeyTable
    from c1222.meter.config import MeterConfig
    from c1222.meter.node import Meter

    loaded = [str(getattr(m, "__file__", "")) for name, m in sys.modules.items()
              if name.endswith("__mypyc")]
    if not loaded or any(Path(f).resolve().parent != src.resolve() for f in loaded):
        sys.exit(f"the compiled c1222 came from {loaded}, not from {src}")
    requests = pickle.loads(requests_file.read_bytes())
    keys = KeyTable.from_cli([key])
    responder = Meter(MeterConfig(security_mode=mode, keys=keys)).responder
    if mode:  # cipher contexts are set up once per key (meter.build's key id 2): not counted
        responder.config.keys.cipher(2)
    unanswered = sum(1 for data in requests if not responder.receive(data, 1, time.time()).data)
    if unanswered:
        sys.exit(f"{unanswered} requests were not answered")


def count(mode: int, requests_file: Path, src: Path | None, key: str,
          out: Path) -> dict[str, int]:
    """Inclusive instructions per function name over all the requests (valgrind + annotate)."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         f"--toggle-collect={RECEIVE}", sys.executable, __file__, "--child", str(mode),
         str(requests_file), str(src or THIS_SRC), key], env=env, capture_output=True,
        text=True, check=False)
    if done.returncode:
        sys.exit(f"the counted run failed:\n{done.stderr[-3000:]}")
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                str(out)], capture_output=True, text=True, check=True).stdout
    found: dict[str, int] = {}
    for line in annotated.splitlines():
        row = ROW.match(line)
        if row is None:
            continue
        # "file:function [object]": the same function can be listed under two file names
        name = row.group(2).partition(":")[2] or row.group(2)
        found[name] = max(found.get(name, 0), int(row.group(1).replace(",", "")))
    return found


def figures(found: dict[str, int], n: int) -> dict[str, float]:
    rows = {"Responder.receive, whole": found.get(RECEIVE, 0) / n}
    for label, symbols in STAGES:
        rows[label] = sum(found.get(symbol, 0) for symbol in symbols) / n
    rows["reference: `cryptography`'s AES update calls inside"] = sum(
        v for k, v in found.items() if CRYPTO_UPDATE.search(k)) / n
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", type=int, choices=(0, 1, 2), action="append")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--base", type=Path, help="another checkout's compiled src directory")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), Path(args.child[1]), Path(args.child[2]), args.child[3])
        return
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found (Debian package valgrind)")
    from c1222.build import compiled

    if "c1222.session.responder" not in compiled():
        parser.error("the responder is not compiled: run `make` first")
    if args.base is not None and not list((args.base / "c1222" / "session").glob("responder*.so")):
        parser.error(f"{args.base} holds no compiled c1222 responder")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    from meter import KEY, build  # the requests of benchmarks/meter.py, built here

    modes = args.mode or [0, 2]
    results: list[tuple[int, dict[str, float], dict[str, float] | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            requests_file = Path(tmp) / f"requests-{mode}"
            requests_file.write_bytes(pickle.dumps([p.data for p in build(mode, args.requests)[1]]))
            this = figures(count(mode, requests_file, None, KEY, Path(tmp) / "this"), args.requests)
            base = None
            if args.base is not None:
                base = figures(count(mode, requests_file, args.base, KEY, Path(tmp) / "base"),
                               args.requests)
            results.append((mode, this, base))
    lines = report(results, args.requests)
    print("\n".join(lines))
    if args.base is None:
        write_section("Responder: instructions per request (benchmarks/responder_instructions.py)",
                      lines)


def report(results: list[tuple[int, dict[str, float], dict[str, float] | None]],
           n: int) -> list[str]:
    about = (f"Instructions of `Responder.receive` per request, counted by callgrind over {n:,} "
             "requests (Security + Full Read of Table 28, each with a fresh invocation id and "
             "IV), each stage inclusive of what it calls. A count, not a time: user-space "
             "instructions only. The same code on the same requests counts the same to within "
             "0.2 %, where timings on this machine move by tens of per cent.")
    lines = [machine(), "", about, ""]
    for mode, this, base in results:
        whole = this["Responder.receive, whole"]
        if base is None:
            lines += [f"| mode {mode} | instructions per request | share of the whole |",
                      "|---|---:|---:|"]
            lines += [f"| {label.replace('  ', '&nbsp;&nbsp;')} | {value:,.0f} | "
                      f"{value / whole:.0%} |" for label, value in this.items() if value]
        else:
            lines += [f"| mode {mode} | base | this | change |", "|---|---:|---:|---:|"]
            for label, value in this.items():
                before = base[label]
                if value or before:
                    change = f"{value / before - 1:+.1%}" if before else "new"
                    lines.append(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {before:,.0f} | "
                                 f"{value:,.0f} | {change} |")
        lines.append("")
    lines.append(f"Run: `.venv/bin/python benchmarks/responder_instructions.py --requests {n}`.")
    return lines


if __name__ == "__main__":
    main()
