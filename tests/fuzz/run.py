"""Run one fuzz target under atheris (libFuzzer): ``python tests/fuzz/run.py TARGET [flags]``.

Flags starting with ``-`` go to libFuzzer unchanged (``-max_total_time=300``, ``-seed=1``,
``-runs=N``, ``-jobs`` ...). ``--corpus DIR`` keeps the growing corpus there (default: a
temporary directory, discarded). The seeds (tests/fuzz/corpus.py) are written to a
temporary directory at each start. ``--list`` prints the targets.

Defaults added unless given: ``-timeout=10`` (one input running longer is a hang),
``-rss_limit_mb=2048`` (bounded memory) and ``-artifact_prefix=<cwd>/``. A crash exits
non-zero with the Python traceback and the input written to ``<prefix>crash-<sha1>``;
store it under tests/fuzz/crashers/TARGET/ once fixed (docs/fuzzing.md).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
for entry in (str(REPO_ROOT / "src"), str(REPO_ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

DEFAULT_FLAGS = {"-timeout": "10", "-rss_limit_mb": "2048"}


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    import atheris

    # Instrument the project for coverage, and dpkt only for the capture reader's target
    # (instrumenting dpkt costs seconds of start-up in every other target).
    include = ["c1222"] + (["dpkt"] if args[0] == "pcap" else [])
    with atheris.instrument_imports(include=include):
        from tests.fuzz import corpus, targets

    if args[0] == "--list":
        for target in targets.TARGETS.values():
            print(f"{target.name:12} {target.doc}")
        return 0
    name, rest = args[0], args[1:]
    if name not in targets.TARGETS:
        print(f"unknown target {name!r}; --list shows them", file=sys.stderr)
        return 2
    corpus_dir = None
    flags: list[str] = []
    it = iter(rest)
    for arg in it:
        if arg == "--corpus":
            corpus_dir = Path(next(it))
        elif arg.startswith("--corpus="):
            corpus_dir = Path(arg.split("=", 1)[1])
        else:
            flags.append(arg)
    given = {f.split("=", 1)[0] for f in flags}
    flags += [f"{k}={v}" for k, v in DEFAULT_FLAGS.items() if k not in given]
    if "-artifact_prefix" not in given:
        flags.append(f"-artifact_prefix={Path.cwd()}/")
    with tempfile.TemporaryDirectory(prefix=f"c1222-fuzz-{name}-") as tmp:
        seed_dir = Path(tmp) / "seeds"
        count = corpus.write_seeds(name, seed_dir)
        print(f"fuzz target {name}: {count} seeds "
              f"({'with' if corpus.capture_files() else 'WITHOUT'} ../shared/captures)",
              file=sys.stderr, flush=True)
        work = corpus_dir or Path(tmp) / "corpus"
        work.mkdir(parents=True, exist_ok=True)
        run = targets.TARGETS[name].run
        atheris.Setup([argv[0], *flags, str(work), str(seed_dir)], run)
        atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
