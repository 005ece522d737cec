"""The compiled build: ``C1222_COMPILE=1`` compiles the hot modules below with mypyc.

``make`` builds this way (``make venv``, ``make test``, ``make demo``: C extensions beside the
``.py`` files, rebuilt when one of these modules changes; docs/performance.md). Without the
variable, as a plain ``pip install`` does, this file adds nothing and the package is pure Python:
the same behaviour and bytes, slower (tests/unit/test_pure_build.py runs the codec, crypto and
session tests on it). Python imports an extension before the ``.py`` of the same name, so a
module edited outside ``make`` needs ``make compile`` (or ``make uncompile``); the tests refuse to
run on a stale extension (tests/conftest.py).
"""

import os

from setuptools import setup

#: The modules a message's decode, security and service spend their time in (benchmarks/).
#: The Makefile reads this list (one quoted path per line) for its rebuild rule.
#: crypto/nonce_source.py stays Python: a compiled Protocol class is not runtime-checkable.
COMPILED = [
    "src/c1222/codec/ber.py",
    "src/c1222/codec/acse.py",
    "src/c1222/codec/epsem.py",
    "src/c1222/codec/framing.py",
    "src/c1222/codec/text.py",
    "src/c1222/session/dissect.py",
    "src/c1222/transport/pcap.py",
    "src/c1222/codec/services.py",
    "src/c1222/codec/native.py",
    "src/c1222/codec/segments.py",
    "src/c1222/crypto/eax_prime.py",
    "src/c1222/crypto/policy.py",
    "src/c1222/crypto/replay.py",
    "src/c1222/crypto/nonces.py",
    "src/c1222/crypto/keys.py",
    # The meter's serving path (benchmarks/meter.py): the responder, the meter's service
    # dispatcher, the table store and its access control. Responder allows interpreted
    # subclasses (c1222/_mypyc.py); the others cannot be subclassed or have their methods
    # replaced on an instance once compiled (tests wrap them instead).
    "src/c1222/session/responder.py",
    "src/c1222/meter/services.py",
    "src/c1222/tables/store.py",
    "src/c1222/tables/access.py",
]

if os.environ.get("C1222_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:  # pip's first pass: it asks what to install into the build env
        setup(setup_requires=["mypy>=1.10"])
    else:
        setup(ext_modules=mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3"))
else:
    setup()
