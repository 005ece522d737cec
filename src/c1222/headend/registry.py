"""The head-end's registrar: moved to :mod:`c1222.session.registrar` so the master relay
shares it; these names stay importable from here."""

from __future__ import annotations

from c1222.session.registrar import (
    ASSIGNED_BASE,
    REG_INFO,
    Node,
    RegistrarServices,
    native_address_text,
)

__all__ = ["ASSIGNED_BASE", "REG_INFO", "Node", "RegistrarServices", "native_address_text"]
