"""Shared by the benchmarks that run the head-end as its CLI: scrape its /metrics, account
collection intervals from them, and the CPU and memory of a process tree.

Run as a script (``python benchmarks/_metrics.py URL[,URL...] SECONDS``) it prints one JSON
line a second with every URL's scrape: benchmarks/network.py runs it inside the head-end's
network namespace, benchmarks/fleet.py calls :func:`scrape` from a thread.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request
from pathlib import Path

M = "c1222_headend_"
DUE = M + "collection_meters_due_total"
READS = M + "reads_total"
#: What :func:`parse` calls the successful collections (whatever interval they were due in).
READS_OK = READS + ":ok"
TICKS = os.sysconf("SC_CLK_TCK")
#: The head-end's API needs credentials (docs/headend.md, "Sign-in and roles"): a head-end
#: started by a benchmark inherits this environment variable and provisions it as an admin
#: API token, and every scrape here sends it (a scraper in a namespace inherits it too).
TOKEN = os.environ.setdefault("C1222_HEADEND_ADMIN_TOKEN", secrets.token_hex(32))
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def get(url: str, timeout: float = 10) -> bytes:
    """``GET url`` with the benchmark's admin token."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=timeout) as r:
        return r.read()


def parse(text: str) -> dict:
    """A Prometheus text page as ``{name: value}`` (unlabelled samples) and ``{name_bucket:
    {le: count}}`` (histograms)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out.setdefault(sample.name, {})[sample.labels["le"]] = sample.value
            elif not sample.labels:
                out[sample.name] = sample.value
            elif sample.name == READS:  # collections by outcome: ok ones are reads done
                key = f"{READS}:{sample.labels.get('outcome', '')}"
                out[key] = out.get(key, 0) + sample.value
    return out


def scrape(url: str) -> dict:
    """One scrape of ``url``, with the wall time it was taken (``t``)."""
    text = get(url).decode()
    return {"t": time.time(), **parse(text)}


def boundaries(rows: list[dict]) -> list[dict]:
    """The scrapes at which a new collection interval had begun (its due counter moved)."""
    seen, out = None, []
    for row in rows:
        due = row.get(DUE)
        if due is not None and due != seen:
            out.append(row)
            seen = due
    return out


def full_start(marks: list[dict], meters: int) -> int | None:
    """The index of the first boundary whose interval has ``meters`` due (every meter)."""
    for k in range(1, len(marks)):
        if marks[k][DUE] - marks[k - 1][DUE] >= meters:
            return k - 1
    return None


def interval_rows(marks: list[dict], start: int, intervals: int) -> list[dict]:
    """due / read / failed / skipped of the ``intervals`` intervals beginning at boundary
    ``start``: the gauges of the last whole interval, as published when the next one began."""
    rows = []
    for k in range(start + 1, start + intervals + 1):
        rows.append({name: int(marks[k].get(f"{M}collection_last_meters_{name}", 0))
                     for name in ("due", "read", "failed", "skipped")})
    return rows


def collection_history(console: str) -> list[dict] | None:
    """The collector's intervals from ``GET /api/collection`` (the current one and the
    history, each with number, start, end, due, read, failed, late, skipped), or None when
    the head-end has no such API (a head-end older than its collection scheduler)."""
    try:
        body = json.loads(get(f"{console}/api/collection?history=60"))
    except (OSError, ValueError):
        return None
    return [i for i in [body.get("current"), *body.get("history", [])] if i]


def bucket_percentile(before: dict, after: dict, p: float) -> float:
    """The p-quantile (seconds) of what a Prometheus histogram counted between two scrapes,
    linear within a bucket (coarse: the head-end's buckets are 0.1, 0.25, 0.5, 1, 2.5 ... s)."""
    bounds = sorted((float(le), after.get(le, 0) - before.get(le, 0)) for le in after)
    total = bounds[-1][1] if bounds else 0
    if not total:
        return float("nan")
    want, lower, below = p * total, 0.0, 0.0
    for upper, count in bounds:
        if count >= want:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((want - below) / inside if inside else 1.0)
        lower, below = upper, count
    return lower


def pair_exchanges(rows: list[tuple]) -> list[float]:
    """Request -> response seconds from the head-end's message log rows ``(ap_title,
    direction, time)`` in id order: per AP title, an "in" pairs with the "out" before it."""
    import datetime as dt

    sent: dict[str, float] = {}
    out = []
    for title, direction, when in rows:
        if not isinstance(when, dt.datetime):
            when = dt.datetime.fromisoformat(str(when))
        stamp = when.timestamp()
        if direction == "out":
            sent[title] = stamp
        elif title in sent:
            out.append(stamp - sent.pop(title))
    return sorted(out)


def percentile(ordered: list[float], p: float) -> float:
    """The p-quantile of sorted values (nan when there are none)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every process below it (the living ones)."""
    return sum(cpu_seconds(p) for p in tree_pids(pid))


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and every process below it, KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> None:
    urls, until = sys.argv[1].split(","), time.monotonic() + float(sys.argv[2])
    while time.monotonic() < until:
        try:
            print(json.dumps([scrape(url) for url in urls]), flush=True)
        except OSError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
