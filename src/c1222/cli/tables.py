"""`c1222 tables`: C12.19 table tools (filled in by the tables work)."""

from __future__ import annotations

import click


@click.group()
def tables() -> None:
    """C12.19 data tables."""
