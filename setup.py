"""Opt-in compiled decode path: ``C1222_COMPILE=1`` compiles the hot modules with mypyc.

Without it this file adds nothing and the package is pure Python (the default, and what CI
tests). With it, ``make compile`` (or ``C1222_COMPILE=1 python setup.py build_ext --inplace``)
puts a C extension beside each module below; Python imports an extension before the ``.py``
of the same name, so after editing one of these modules run ``make compile`` again or
``make uncompile`` (BENCHMARKS.md: "Compiling the codec").
"""

import os

from setuptools import setup

#: The modules `c1222 decode` spends its time in (benchmarks/decode.py), then the meter's
#: serving path. codec/services.py is
#: not among them: mypyc 2.x hands a dataclass's ClassVar to @dataclass as a plain annotation,
#: which turns `service`/`code` into fields.
COMPILED = [
    "src/c1222/codec/ber.py",
    "src/c1222/codec/acse.py",
    "src/c1222/codec/epsem.py",
    "src/c1222/codec/framing.py",
    "src/c1222/codec/text.py",
    "src/c1222/session/dissect.py",
    "src/c1222/transport/pcap.py",
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
