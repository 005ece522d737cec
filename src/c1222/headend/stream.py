"""Readings on a NATS JetStream stream: the URL, subjects, message ids and the message body
(docs/storage.md, "Scaling out"). Pure: no I/O; ``publish`` and ``sink`` do the talking.

One message per stored reading, on the subject of its meter,
``<prefix>.<AP title with its dots as underscores>`` (``c1222.readings.2_16_124_113620_1_22_0_5``),
so a consumer can take one meter, or all with ``<prefix>.>``. Its ``Nats-Msg-Id`` header is
the reading's natural key (docs/storage.md, "No duplicates"): a reading published twice
within the stream's duplicate window is stored by JetStream once. The body is compact JSON::

    {"ap_title": "2.16.124.113620.1.22.0.5", "kind": "register",
     "time": "2024-05-01T12:00:00.000000Z", "name": "wh", "value": 1234.0, "extra": null}
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from c1222.errors import ConfigurationError

from .storage import KINDS, Reading
from .storage.records import _check_ap_title

__all__ = ["BadMessage", "NatsTarget", "connect_stream", "decode_message", "encode_message",
           "message_id", "parse_nats_url", "subject_for"]

DEFAULT_STREAM = "C1222_READINGS"
DEFAULT_PREFIX = "c1222.readings"
#: Seconds JetStream remembers a message id: a publish retried after a lost acknowledgement,
#: or a reading re-read after a head-end restart, within it is dropped by the server.
DUPLICATE_WINDOW = 300.0
#: Bytes of a message body we decode at most (a reading is ~200; a hostile one is refused).
MAX_MESSAGE = 16 * 1024
MAX_NAME = 256
MAX_AP_TITLE = 128
MAX_EXTRA = 4096

_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BadMessage(ValueError):
    """A message on the stream that is not a reading this code wrote (skipped, counted)."""


@dataclass(frozen=True)
class NatsTarget:
    """Where readings go: ``nats://[USER:PASSWORD@]HOST:PORT[?stream=NAME&prefix=A.B]``."""

    servers: str  # the URL without our parameters, as nats-py takes it
    display: str  # fit for logs: password hidden
    stream: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX

    @property
    def subjects(self) -> str:
        """Every meter's subject: what the stream holds and the sink consumes."""
        return f"{self.prefix}.>"


def parse_nats_url(url: str) -> NatsTarget:
    """Check ``url`` and split off our parameters; :class:`ConfigurationError` naming the
    problem (password hidden) when it is not ``nats://HOST:PORT`` with valid parameters."""
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise ConfigurationError(f"malformed NATS URL {_redact(text)}: {exc}") from None
    display = _redact(text) if parts.netloc else text
    if parts.scheme.lower() != "nats":
        raise ConfigurationError(f"NATS URL {display} must start with nats://")
    if not host:
        raise ConfigurationError(f"NATS URL {display} names no host (nats://HOST:PORT)")
    if port is None or port == 0:
        raise ConfigurationError(f"NATS URL {display} names no port (nats://HOST:4222)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"NATS URL {display} has a path; use ?stream=NAME&prefix=A.B")
    params = {"stream": DEFAULT_STREAM, "prefix": DEFAULT_PREFIX}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in params:
            raise ConfigurationError(f"NATS URL {display}: unknown parameter {key!r} "
                                     "(stream, prefix)")
        params[key] = value
    if not _STREAM_NAME.fullmatch(params["stream"]):
        raise ConfigurationError(f"NATS URL {display}: stream {params['stream']!r} must be "
                                 "1-64 letters, digits, - or _")
    tokens = params["prefix"].split(".")
    if len(tokens) > 8 or not all(_TOKEN.fullmatch(t) for t in tokens):
        raise ConfigurationError(f"NATS URL {display}: prefix {params['prefix']!r} must be "
                                 "dot-separated tokens of letters, digits, - or _")
    servers = parts._replace(query="", fragment="").geturl()
    return NatsTarget(servers, display, params["stream"], params["prefix"])


def _redact(url: str) -> str:
    from .storage import redact_url

    return redact_url(url)


async def connect_stream(target: NatsTarget, *, duplicate_window: float = DUPLICATE_WINDOW,
                         timeout: float = 5.0) -> tuple[Any, Any]:
    """A NATS connection and its JetStream context, the readings stream made when missing (the
    publisher and the sink both start this way). A stream that exists with another
    configuration (an operator's limits) is used as it is, provided it holds our subjects.
    The caller closes the connection; nothing is left open when this raises."""
    import nats
    from nats.js.errors import BadRequestError

    async def quiet(exc: Exception) -> None:
        """nats-py logs every error with a traceback; the callers say it once, as a WARNING."""

    # The callers reconnect themselves (the publisher keeps its outbox), so nats-py does not
    # (max_reconnect_attempts=0 would retry the first connect for ever).
    nc = await nats.connect(target.servers, connect_timeout=2, allow_reconnect=False,
                            max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=quiet)
    try:
        js = nc.jetstream(timeout=timeout)
        try:
            await js.add_stream(name=target.stream, subjects=[target.subjects],
                                duplicate_window=duplicate_window)
        except BadRequestError:
            info = await js.stream_info(target.stream)
            if target.subjects not in (info.config.subjects or []):
                raise RuntimeError(f"stream {target.stream} exists without subjects "
                                   f"{target.subjects}") from None
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    return nc, js


def subject_for(prefix: str, ap_title: str) -> str:
    """The meter's subject: its AP title with dots as underscores (a subject token cannot
    hold a dot), under ``prefix``."""
    return f"{prefix}.{ap_title.replace('.', '_')}"


def _time_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(
        timespec="microseconds") + "Z"


def message_id(ap_title: str, reading: Reading) -> str:
    """The natural key (ap_title, kind, time, name) as one header value."""
    return f"{ap_title} {reading.kind} {_time_text(reading.time)} {reading.name}"


def encode_message(ap_title: str, reading: Reading) -> bytes:
    """The message body of one reading (compact JSON, keys in a fixed order)."""
    return json.dumps({"ap_title": ap_title, "kind": reading.kind,
                       "time": _time_text(reading.time), "name": reading.name,
                       "value": reading.value, "extra": reading.extra},
                      separators=(",", ":"), allow_nan=False).encode()


def _unencodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def decode_message(subject: str, data: bytes, prefix: str) -> tuple[str, Reading]:
    """``(ap_title, reading)`` of a message, or :class:`BadMessage` saying why not: too large,
    not JSON, a missing or wrong field, or a subject that is not the meter's own."""
    if len(data) > MAX_MESSAGE:
        raise BadMessage(f"{len(data)} bytes, more than {MAX_MESSAGE}")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadMessage("not a JSON object")
    ap_title, kind, when, name = (body.get(k) for k in ("ap_title", "kind", "time", "name"))
    value, extra = body.get("value"), body.get("extra")
    if not isinstance(ap_title, str) or len(ap_title) > MAX_AP_TITLE:
        raise BadMessage(f"ap_title: a dotted OID of at most {MAX_AP_TITLE} characters")
    try:
        _check_ap_title(ap_title)
    except ValueError as exc:
        raise BadMessage(str(exc)) from None
    if subject != subject_for(prefix, ap_title):
        raise BadMessage(f"subject {subject[:100]!r} is not the subject of {ap_title}")
    if kind not in KINDS:
        raise BadMessage(f"kind {str(kind)[:40]!r} is not one of {KINDS}")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise BadMessage("name: a non-empty string is required")
    try:  # an integer of 400 digits is JSON, and too large for a float
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and \
            math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise BadMessage("value: a finite number is required")
    if extra is not None and not (isinstance(extra, str) and len(extra) <= MAX_EXTRA):
        raise BadMessage(f"extra: a string of at most {MAX_EXTRA} characters or null")
    for field, text in (("name", name), ("extra", extra or "")):
        # PostgreSQL text holds neither NUL nor lone surrogates: one such row would fail its
        # whole batch at every redelivery, so it is refused here, as malformed.
        if "\x00" in text or _unencodable(text):
            raise BadMessage(f"{field}: NUL or unencodable characters")
    if not isinstance(when, str) or not when.endswith("Z"):
        raise BadMessage("time: ISO-8601 UTC text ending in Z is required")
    try:
        time = datetime.fromisoformat(when[:-1])
        if time.tzinfo is not None:  # "12:00+05:00Z": which zone? Refused, never guessed
            raise ValueError(f"time {when[:40]!r} has an offset before its Z")
        reading = Reading(kind, time.replace(tzinfo=timezone.utc), name, float(value), extra)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadMessage(f"not a reading: {exc}") from None
    return ap_title, reading
