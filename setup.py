"""Opt-in compiled decode path: ``C1222_COMPILE=1`` compiles the hot modules with mypyc.

Without it this file adds nothing and the package is pure Python (the default, and what CI
tests). With it, ``make compile`` (or ``C1222_COMPILE=1 python setup.py build_ext --inplace``)
puts a C extension beside each module below; Python imports an extension before the ``.py``
of the same name, so after editing one of these modules run ``make compile`` again or
``make uncompile`` (BENCHMARKS.md: "Compiling the codec").
"""

import os

from setuptools import setup

#: The modules `c1222 decode` (benchmarks/decode.py) and the security layer (benchmarks/crypto.py)
#: spend their time in. crypto/nonce_source.py stays Python: a compiled Protocol class is not
#: runtime-checkable.
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
