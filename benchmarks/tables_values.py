"""Cost of showing a table as values (c1222.tables.values.describe_table) for the console.

For tables of the default meter (23, 28, 0, 52, 74 and Table 64 in part and whole), next to
the reference measured in the same run: the engine's plain decode of the same bytes
(c1222.tables.registry.decode_table), which describe_table does once, plus the element map
and the named rows. The head-end describes tables over 1 KiB, and every partial read, in its decoder process
(c1222.headend.tables_api.OFF_LOOP_BYTES); this says what that saves the event loop.

Writes the section "Tables as values (benchmarks/tables_values.py)" of BENCHMARKS.md.
Run: .venv/bin/python benchmarks/tables_values.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _report import machine, write_section  # noqa: E402

from c1222.tables.profile import MeterProfile, build_tables  # noqa: E402
from c1222.tables.readings import decoded  # noqa: E402
from c1222.tables.values import context_tables, describe_table  # noqa: E402

TITLE = "Tables as values (benchmarks/tables_values.py)"


def best(fn: Callable[[], object], budget: float = 0.6) -> float:
    """Median seconds of one call over repeated batches within ``budget`` seconds."""
    runs: list[float] = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(runs) < 5:
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    store = build_tables(MeterProfile(ap_title="2.16.124.113620.1.22.0.123.8437")).store
    meter = {n: store.get_bytes(n) for n in store.numbers()}
    rows = []
    cases = [(23, None, None), (28, None, None), (0, None, None), (52, None, None),
             (74, None, None), (64, 0, 4096), (64, None, None)]
    for number, offset, count in cases:
        data = meter[number] if offset is None else meter[number][offset:offset + count]
        ctx = {n: meter[n] for n in context_tables(number)}

        whole = {0: meter[0], **ctx, number: meter[number]}

        def reference() -> object:
            return decoded(whole)  # the context in ascending order, then the table

        def described() -> object:
            return describe_table(number, data, ctx, offset)

        result = describe_table(number, data, ctx, offset)
        ref, ours = best(reference), best(described)
        label = f"{number}" + (f" bytes {offset}..{offset + count}" if offset is not None else "")
        rows.append(f"| {label} | {len(data):,} | {len(result['fields']):,} | "
                    f"{ref * 1e3:.2f} | {ours * 1e3:.2f} | {ours / ref:.1f}x |")
    load = os.getloadavg()[0]
    write_section(TITLE, [
        machine(), "",
        f"Default meter profile; median of repeated calls; load average {load:.1f} at the end "
        "(2 cores shared with other work). Reference: the engine's decode of the whole table "
        "and its context tables (`readings.decoded`), in the same run.", "",
        "| table | bytes | rows | decode_table ms (reference) | describe_table ms | ratio |",
        "|---|---:|---:|---:|---:|---:|",
        *rows, "",
        "A partial read is described inside a blank table of the meter's size, so it costs a "
        "decode of the whole table. The head-end describes tables over 1 KiB and every "
        "partial read in its decoder process (`OFF_LOOP_BYTES`), so only small tables "
        "(well under a millisecond here) are described on its event loop.",
    ])
    print("\n".join(rows))


if __name__ == "__main__":
    main()
