"""Thousands of simulated C12.22 meters per process (`c1222 fleet`, docs/fleet.md)."""
