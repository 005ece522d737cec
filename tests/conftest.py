"""Every test talks to head-ends with the credentials of tests/auth.py (one place)."""

import tests.auth  # noqa: F401  - sets the token in the environment and in httpx clients
