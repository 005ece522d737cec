"""C12.22 security (digest section 5): EAX' on AES-128, keys, replay window, security modes.

The whole layer is pure. The entry points most callers need:

* :func:`~c1222.crypto.policy.protect` / :func:`~c1222.crypto.policy.unprotect` — secure and
  verify whole APDUs in security modes 0, 1 and 2;
* :class:`~c1222.crypto.keys.KeyTable` — key id -> AES-128 key (Wireshark's key file format);
* :class:`~c1222.crypto.replay.ReplayWindow` — refuse a secured message seen before.
"""

from c1222.crypto.keys import KeyTable
from c1222.crypto.policy import (
    authenticated_cleartext,
    make_unprotect,
    message_id,
    protect,
    unprotect,
)
from c1222.crypto.replay import MessageId, ReplayWindow

__all__ = [
    "KeyTable",
    "MessageId",
    "ReplayWindow",
    "authenticated_cleartext",
    "make_unprotect",
    "message_id",
    "protect",
    "unprotect",
]
