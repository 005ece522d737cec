"""Checking a written-out field-type table against the annotations a class carries.

Pure Python keeps the annotations as written, so the table must equal them. A build compiled
with mypyc keeps only a plain class: ``type`` for ``X | None``, the bare ``tuple`` for
``tuple[Uid, ...]``; the table must then name that same field with a type it erases to.
"""

import typing


def as_declared(annotation: object, written: object) -> bool:
    if annotation == written:
        return True
    return annotation is type or annotation is typing.get_origin(written)


def compiled(cls: type) -> bool:
    """Whether ``cls`` comes from a compiled module (its annotations are mypyc's)."""
    from c1222 import build

    return cls.__module__ in build.compiled()
