"""Worker processes end with the process that started them.

A parent killed outright (kill -9, the kernel's OOM killer) cannot stop its workers, and a
worker waiting on its queue waits for ever: the head-end's decoder processes outlived a
kill -9'd head-end, one idle Python process and one resource tracker per crash, until the
machine restarted. Every process we start ends soon after its parent:

* :func:`exit_with_parent`, called first in the Python workers we start (the head-end's
  decoders, ``c1222 decode --jobs`` and ``c1222 fleet`` workers);
* :func:`signal_with_parent`, between fork and exec of a program we start (the head-end
  supervisor's workers, which hold its port).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from typing import Final

#: How often a worker looks at its parent (seconds): the most it outlives it by.
POLL: Final = 1.0


def exit_with_parent(poll: float = POLL) -> None:
    """End this process within ``poll`` seconds once its parent is gone (its parent process id
    changes when it is reparented). Portable: a daemon thread, no Linux ``prctl``."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)  # nothing to hand back to: the parent that would read it is gone

    threading.Thread(target=watch, name="c1222-exit-with-parent", daemon=True).start()


def signal_with_parent() -> None:
    """In a child between fork and exec (``preexec_fn``): SIGTERM when its parent dies, even
    by kill -9 (Linux ``prctl(PR_SET_PDEATHSIG)``, kept across exec); elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
