"""Server-sent event streams that end when their uvicorn server shuts down.

uvicorn waits for every open response to finish before it runs the lifespan shutdown, and an
event stream never finishes by itself: without help, a web app with a page open hangs on Ctrl-C
or ``should_exit``. :func:`streams_of` gives an app one shared stop flag (:class:`Streams`) that
its streams read every tick; :func:`hook_uvicorn_shutdown` wraps ``uvicorn.Server.shutdown``
once per process so that it sets the flag of the app that server serves, then runs uvicorn's
own shutdown unchanged. The display and the head-end console both use it.
"""

from __future__ import annotations

import json
from typing import Any


class Streams:
    """The stop flag every open event stream of one app reads. A plain attribute, not an
    Event: it is set from uvicorn's shutdown (or a signal handler) and read at each tick."""

    closing = False


def streams_of(app: Any) -> Streams:
    """The app's :class:`Streams`, created on first use (kept in ``app.state``)."""
    state = app.state
    streams = getattr(state, "c1222_streams", None)
    if not isinstance(streams, Streams):
        streams = state.c1222_streams = Streams()
    return streams


def close_streams(app: Any) -> None:
    """End every open event stream of ``app``."""
    streams = getattr(getattr(app, "state", None), "c1222_streams", None)
    if isinstance(streams, Streams):
        streams.closing = True


def hook_uvicorn_shutdown() -> None:
    """Make ``uvicorn.Server`` close our streams when it starts shutting down (idempotent)."""
    try:
        from uvicorn.server import Server
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    original = Server.shutdown
    if getattr(original, "_c1222_closes_streams", False):
        return

    async def shutdown(self: Any, *args: Any, **kwargs: Any) -> None:
        close_streams(getattr(self.config, "app", None))
        await original(self, *args, **kwargs)

    shutdown._c1222_closes_streams = True  # type: ignore[attr-defined]
    Server.shutdown = shutdown  # type: ignore[method-assign]


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One server-sent event with a compact JSON body."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
