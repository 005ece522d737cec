"""Test suite of c1222 (a package so tests.interop.tshark can be imported)."""
