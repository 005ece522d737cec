"""Tests judged by tshark; the harness is tests.interop.tshark."""
