"""c1222.build: which modules run compiled, and which extensions are stale."""

import importlib.machinery
import os

from c1222 import build

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


def _package(tmp_path):
    pkg = tmp_path / "c1222"
    (pkg / "codec").mkdir(parents=True)
    for name in ("ber", "acse", "services"):
        (pkg / "codec" / f"{name}.py").write_text("")
    (pkg / "codec" / f"ber{SUFFIX}").write_bytes(b"")
    (pkg / "codec" / f"acse{SUFFIX}").write_bytes(b"")
    return pkg


def test_compiled_lists_modules_with_an_extension(tmp_path):
    pkg = _package(tmp_path)
    assert build.compiled(pkg) == ["c1222.codec.acse", "c1222.codec.ber"]
    assert build.stale(pkg) == []


def test_a_source_newer_than_its_extension_is_stale(tmp_path):
    pkg = _package(tmp_path)
    ext = pkg / "codec" / f"ber{SUFFIX}"
    os.utime(ext, (1_000_000, 1_000_000))
    assert build.stale(pkg) == ["c1222.codec.ber"]


def test_describe_names_the_build():
    text = build.describe()
    assert text == "pure Python" or text.startswith("compiled with mypyc (")
