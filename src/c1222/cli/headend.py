"""`c1222 headend`: the metering server (C12.22 host, collector, storage, web console)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import click

from c1222.cli.lifecycle import run_until_interrupted
from c1222.cli.params import (
    AP_TITLE, APDU_SIZE, APDU_SIZE_HELP, KEY, KEY_ID, PASSWORD, SECURITY_MODE, SEGMENT_SIZE,
    SEGMENT_SIZE_HELP, USER_ID, AddressType, DatabaseUrlType, NatsUrlType, OutputFile,
    add_master_keys, bind_problem, check_keys, key_table, listening_socket, seconds,
)
from c1222.limits import DEFAULT_MAX_APDU_SIZE
from c1222.errors import C1222Error, ConfigurationError
from c1222.transport.endpoint import Address

#: Most --workers (each is a whole process with its own connections to PostgreSQL).
MAX_WORKERS = 64
#: Longest gap between a worker's looks at the nodes the others registered (shorter with a
#: short --collect-interval).
NODE_SYNC_MAX = 10.0


class WorkerType(click.ParamType):
    """``I/N:PORT``: this process is worker I of N on the shared C12.22 port PORT."""

    name = "I/N:PORT"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, int, int]:
        if isinstance(value, tuple):
            return value
        found = re.fullmatch(r"(\d{1,3})/(\d{1,3}):(\d{1,5})", str(value))
        if not found:
            self.fail("expected I/N:PORT", param, ctx)
        index, count, port = (int(g) for g in found.groups())
        if not (0 <= index < count <= MAX_WORKERS and 0 < port < 65536):
            self.fail("I in 0 .. N - 1, N at most 64, PORT 1 .. 65535", param, ctx)
        return index, count, port


#: Shortest --collect-interval: each registered meter is read this often at most (a smaller or
#: negative interval was a busy loop).
MIN_COLLECT_INTERVAL = 0.1


class _HeadendCommand(click.Command):
    """``c1222 headend [OPTIONS]`` runs the server; ``c1222 headend user ...`` manages the
    console's accounts (dispatched before the server's options are parsed, so checking
    those, e.g. that the ports are free, never gets in the way)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] == "user":
            ctx.meta["c1222.user_args"] = args[1:]
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if "c1222.user_args" in ctx.meta:
            with user.make_context("user", ctx.meta["c1222.user_args"], parent=ctx) as sub:
                return user.invoke(sub)
        return super().invoke(ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text("Accounts of the console and API: c1222 headend user "
                             "add|list|remove|token --help")


@click.command(cls=_HeadendCommand)
@click.option("--listen", type=AddressType(listen=True), default="127.0.0.1:1153",
              show_default=True, help="HOST:PORT for C12.22 over TCP and UDP (port 0 picks one)")
@click.option("--db", type=DatabaseUrlType(), default="sqlite:///headend.db", show_default=True,
              help="storage: sqlite:///FILE or postgresql://USER@HOST/DB")
@click.option("--http", "http", type=AddressType(8000, listen=True, udp=False),
              default="127.0.0.1:8000", show_default=True,
              help="HOST:PORT of the web console and REST API (port 0 picks one)")
@click.option("--ap-title", type=AP_TITLE, default="2.16.124.113620.1.22.0.123.4",
              show_default=True)
@click.option("--security-mode", type=SECURITY_MODE, default=0, show_default=True,
              help="mode of the head-end's requests, and the weakest it accepts")
@click.option("--key", "keys", type=KEY, multiple=True, help="a C12.22 key; repeatable")
@click.option("--master-key", "master_keys", type=KEY, multiple=True,
              help="ID:HEX master secret: each meter's key for this id is derived from its AP "
              "title, as `c1222 fleet --master-key` derives it (docs/fleet.md, Keys); repeatable")
@click.option("--key-id", type=KEY_ID, help="key id to send with [the first key]")
@click.option("--user-id", type=USER_ID, default=2, show_default=True,
              help="user id of the Security service sent with each read")
@click.option("--password", type=PASSWORD, default="PASSWORD", show_default=True,
              help="password of the Security service (at most 20 bytes, space padded)")
@click.option("--collect-interval", type=seconds(MIN_COLLECT_INTERVAL), default=5.0,
              show_default=True, help="seconds between reads of each meter's present values")
@click.option("--log-interval", type=seconds(zero=True), default=60.0, show_default=True,
              help="seconds between reads of load profile and event log (0: never)")
@click.option("--collect-concurrency", type=click.IntRange(1, 4096), default=256,
              show_default=True, help="meters read at once (the reads are spread over each "
              "interval; docs/headend.md, Collecting)")
@click.option("--collect-attempts", type=click.IntRange(1, 10), default=3, show_default=True,
              help="attempts per meter per interval: a time-out or unreachable meter is "
              "tried again after a back-off, within its interval")
@click.option("--max-table-bytes", type=click.IntRange(1), default=1 << 20, show_default=True,
              help="bytes the collector reads from one table of a meter per collection")
@click.option("--max-lp-blocks", type=click.IntRange(1), default=1024, show_default=True,
              help="load-profile blocks a meter may claim (Table 61); more: flagged")
@click.option("--max-history-entries", type=click.IntRange(1), default=4096,
              show_default=True, help="history entries a meter may claim (Table 71)")
@click.option("--reg-period", type=click.IntRange(0, 0xFFFFFF), default=3600,
              show_default=True, help="registration period granted to nodes (seconds)")
@click.option("--pcap", type=OutputFile(), help="record every APDU to this pcap")
@click.option("--message-retention", type=seconds(zero=True, maximum=3650 * 86400.0),
              default=7 * 86400.0, show_default=True,
              help="seconds the message log keeps a message (0: no age limit)")
@click.option("--max-messages", type=click.IntRange(0), default=100_000, show_default=True,
              help="messages the log keeps at most (the newest)")
@click.option("--node-retention", type=seconds(zero=True, maximum=3650 * 86400.0),
              default=7 * 86400.0, show_default=True,
              help="seconds a deregistered or expired node is kept")
@click.option("--prune-interval", type=seconds(), default=60.0,
              show_default=True, help="seconds between two retention passes")
@click.option("--max-nodes", type=click.IntRange(1), default=100_000, show_default=True,
              help="registered nodes at most")
@click.option("--max-registrations-per-address", type=click.IntRange(0), default=64,
              show_default=True, help="distinct AP titles one source address may register "
              "(0: no cap; raise it behind a relay)")
@click.option("--max-connections", type=click.IntRange(1, 65535), default=256,
              show_default=True, help="TCP connections at once (the idlest is closed for a "
              "newcomer)")
@click.option("--max-connections-per-address", type=click.IntRange(1, 65535), default=64,
              show_default=True, help="TCP connections at once from one IP address (raise it "
              "for a fleet of simulated meters on one host)")
@click.option("--master-relay", type=AddressType(), default=None,
              help="HOST:PORT of a master relay: register with it as a notification host "
              "and reach the nodes it reports through it (docs/headend.md, Network)")
@click.option("--segment-size", type=SEGMENT_SIZE, help=SEGMENT_SIZE_HELP)
@click.option("--max-apdu-size", type=APDU_SIZE, default=DEFAULT_MAX_APDU_SIZE,
              show_default=True, help=APDU_SIZE_HELP)
@click.option("--publish", type=NatsUrlType(),
              help="also put every stored reading on this NATS JetStream stream: "
              "nats://HOST:PORT[?stream=NAME&prefix=A.B]")
@click.option("--reading-retention", type=seconds(86400.0, maximum=3650 * 86400.0),
              help="seconds readings are kept, in whole days (default: for ever)")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="head-end processes sharing the C12.22 port, collection sharded by AP "
              "title; 2 or more need a postgresql:// --db (docs/headend.md, Workers)")
@click.option("--worker", type=WorkerType(), hidden=True)  # set by the supervisor only
@click.option("-v", "--verbose", count=True, help="-v: log every stored reading (acknowledged)")
def headend(listen: Address, db: str, http: Address, ap_title: str, security_mode: int,
            keys: tuple[str, ...], master_keys: tuple[str, ...], key_id: int | None,
            user_id: int, password: str, collect_interval: float, log_interval: float,
            collect_concurrency: int, collect_attempts: int, max_table_bytes: int,
            max_lp_blocks: int, max_history_entries: int, reg_period: int, pcap: str | None,
            message_retention: float, max_messages: int, node_retention: float,
            prune_interval: float, max_nodes: int, max_registrations_per_address: int,
            max_connections: int, max_connections_per_address: int,
            master_relay: Address | None, segment_size: int | None, max_apdu_size: int,
            publish: Any, reading_retention: float | None, workers: int,
            worker: tuple[int, int, int] | None, verbose: int) -> None:
    """Run the metering server: accept registrations, read meters, store readings.

    Prints the C12.22 address and the console's address once ready; Ctrl-C stops it. On
    the first start with no accounts it makes the account ``admin`` and prints its
    generated password once (to stderr).
    """
    from c1222.headend.server import HeadEnd, HeadEndConfig
    from c1222.headend.storage import Retention

    table = key_table(keys)
    add_master_keys(table, master_keys)
    check_keys(table, key_id, security_mode, what="head-end")
    if listen[1] and listen == http:
        raise click.BadParameter("the console cannot share the C12.22 port", param_hint="'--http'")
    if workers > 1:
        _check_workers(workers, db, http, master_relay, pcap)
        from c1222.cli.main import invoked_args
        from c1222.cli.workers import Supervisor
        from c1222.errors import C1222Error
        from c1222.headend.storage import open_storage

        try:  # reachable, and migrated once here rather than by N workers at once
            open_storage(db).close()
        except C1222Error as exc:
            raise click.BadParameter(str(exc), param_hint="'--db'") from None

        supervisor = Supervisor(_headend_args(invoked_args()), workers, listen, http, ap_title)
        asyncio.run(run_until_interrupted("headend", supervisor.start, supervisor.stop))
        return
    shard: dict[str, Any] = {}
    if worker is not None:
        index, count, port = worker
        listen = (listen[0], port)
        shard = {"shard_index": index, "shard_count": count, "reuse_port": True,
                 "node_sync_interval": min(max(collect_interval, 1.0), NODE_SYNC_MAX)}
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = HeadEndConfig(
            listen=listen, db=db, ap_title=ap_title,
            keys=table, security_mode=security_mode, key_id=key_id,
            user_id=user_id, password=password, collect_interval=collect_interval,
            log_interval=log_interval, reg_period=reg_period, pcap=pcap,
            max_parallel=collect_concurrency, collect_attempts=collect_attempts,
            max_table_bytes=max_table_bytes, max_lp_blocks=max_lp_blocks,
            max_history_entries=max_history_entries,
            retention=Retention(message_age=message_retention, max_messages=max_messages,
                                node_age=node_retention, interval=prune_interval,
                                reading_age=reading_retention),
            max_nodes=max_nodes, max_registrations_per_address=max_registrations_per_address,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            master_relay=master_relay, segment_size=segment_size,
            max_apdu_size=max_apdu_size, publish=publish, **shard)
        node = HeadEnd(config)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(_run(node, http))


def _check_workers(workers: int, db: str, http: Address, master_relay: Address | None,
                   pcap: str | None) -> None:
    """What --workers N (N >= 2) needs, refused with one line before anything starts."""
    if not db.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(f"{workers} workers need a postgresql:// --db (one database "
                                 "all of them write; SQLite is for one process)",
                                 param_hint="'--workers'")
    if http[1] and http[1] + workers - 1 > 65535:
        raise click.BadParameter(f"worker i serves on --http port + i: {http[1]} + "
                                 f"{workers - 1} is over 65535", param_hint="'--workers'")
    for index in range(1, workers if http[1] else 0):  # the option checked port + 0
        problem = bind_problem((http[0], http[1] + index), udp=False)
        if problem:
            raise click.BadParameter(f"worker {index}'s console: {problem}",
                                     param_hint="'--http'")
    if master_relay is not None:
        raise click.BadParameter("not with --master-relay (one notification host per "
                                 "AP title: run one process)", param_hint="'--workers'")
    if pcap is not None:
        raise click.BadParameter("not with --pcap (one file per process would be torn)",
                                 param_hint="'--workers'")


def _headend_args(argv: list[str]) -> list[str]:
    """The options given to `headend`, from the whole command line."""
    if "headend" not in argv:
        raise click.ClickException("--workers: run it as `c1222 headend --workers N ...`")
    return argv[argv.index("headend") + 1:]


async def _run(node: Any, web: tuple[str, int]) -> None:
    import uvicorn

    from c1222.headend.web import create_app
    from c1222.transport.http import uvicorn_config

    app = create_app(node)
    server = uvicorn.Server(uvicorn_config(app, web[0], web[1]))
    # Our event loop handles Ctrl-C and stops the server itself.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    serving: asyncio.Task[None] | None = None

    async def start() -> list[str]:
        nonlocal serving
        web_socket = listening_socket(web, "'--http'")
        try:
            host, port = await node.start()
        except ConfigurationError as exc:
            web_socket.close()
            # the database could not be opened (unreachable, or a schema it cannot migrate)
            raise click.BadParameter(str(exc), param_hint="'--db'") from None
        except BaseException:
            web_socket.close()
            raise
        try:
            password = await app.state.auth.ready()
        except C1222Error as exc:  # a bad C1222_HEADEND_ADMIN_TOKEN, or the database failed
            web_socket.close()
            await node.stop()
            raise click.ClickException(str(exc)) from None
        if password is not None:
            click.echo(f"no accounts yet: made user admin (role admin) with password "
                       f"{password}  (shown once; add others with `c1222 headend user add`)",
                       err=True)
        serving = asyncio.create_task(server.serve(sockets=[web_socket]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():
            await node.stop()
            raise click.ClickException(f"cannot serve the console on {web[0]}:{web[1]}")
        web_host, web_port = server.servers[0].sockets[0].getsockname()[:2]
        return [f"headend {node.config.ap_title} listening on tcp+udp {host}:{port}",
                f"console at http {web_host}:{web_port}  ->  http://{web_host}:{web_port}/"]

    async def stop() -> None:
        server.should_exit = True
        if serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 10)
        await node.stop()

    await run_until_interrupted("headend", start, stop)


# ------------------------------------------------------------------------------ accounts

_DB = click.option("--db", type=DatabaseUrlType(), default="sqlite:///headend.db",
                   show_default=True, help="the head-end's storage (as `c1222 headend --db`)")


@click.group()
def user() -> None:
    """Accounts of the head-end's console and REST API (docs/headend.md, "Sign-in and
    roles"). Roles, weakest first: viewer, operator, engineer, admin."""


def _storage(db: str) -> Any:
    from c1222.headend.storage import open_storage

    try:
        return open_storage(db)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--db'") from None


def _audit(storage: Any, action: str, name: str, status: int, result: str,
           **params: str) -> None:
    import datetime as dt
    import getpass
    import json

    from c1222.headend.storage import AuditRecord

    storage.log_audit(AuditRecord(
        time=dt.datetime.now(dt.timezone.utc), user=None, address=f"cli:{getpass.getuser()}",
        action=action, status=status, params=json.dumps({"name": name, **params}),
        result=result))


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from c1222.headend.auth import check_name

    try:
        return check_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@user.command("add")
@click.argument("name", callback=_name)
@click.option("--role", type=click.Choice(["viewer", "operator", "engineer", "admin"]),
              required=True, help="what the account may do")
@click.option("--password-stdin", is_flag=True,
              help="read the password from the first line of stdin (else: a prompt)")
@_DB
def user_add(name: str, role: str, password_stdin: bool, db: str) -> None:
    """Add an account. The password is asked for (or read from stdin), never taken from
    the command line."""
    import datetime as dt

    from c1222.headend.auth import check_password, hash_password
    from c1222.headend.storage import UserRecord

    if password_stdin:
        stdin: Any = click.get_text_stream("stdin")
        password = str(stdin.readline(1024)).rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="password") from None
    with _storage(db) as storage:
        record = UserRecord(name, role, hash_password(password),
                            dt.datetime.now(dt.timezone.utc))
        if not storage.add_user(record):
            raise click.ClickException(f"user {name!r} exists (remove it first)")
        _audit(storage, "add an account", name, 201, "ok", role=role)
    click.echo(f"added {name} ({role})")


@user.command("list")
@_DB
def user_list(db: str) -> None:
    """The accounts: name, role, when made."""
    with _storage(db) as storage:
        users = storage.list_users()
    if not users:
        click.echo("no accounts (the head-end makes admin on its first start)")
    for record in users:
        click.echo(f"{record.name}\t{record.role}\t{record.created_at:%Y-%m-%d %H:%M:%SZ}")


@user.command("remove")
@click.argument("name")
@_DB
def user_remove(name: str, db: str) -> None:
    """Remove an account and its API tokens (the last admin stays)."""
    with _storage(db) as storage:
        record = storage.get_user(name)
        if record is None:
            raise click.ClickException(f"no user {name!r}")
        if record.role == "admin" and storage.count_users("admin") <= 1:
            raise click.ClickException(f"{name!r} is the last admin: add another first")
        storage.remove_user(name)
        _audit(storage, "remove an account", name, 200, "ok")
    click.echo(f"removed {name}")


@user.command("token")
@click.argument("name")
@click.option("--label", default="", help="what the token is for (e.g. prometheus)")
@_DB
def user_token(name: str, label: str, db: str) -> None:
    """Make an API token of an account (same role) and print it once: send it as
    ``Authorization: Bearer TOKEN``. Only its hash is stored."""
    import datetime as dt

    from c1222.headend.auth import hash_token, new_token

    if len(label) > 64:
        raise click.BadParameter("at most 64 characters", param_hint="'--label'")
    token = new_token()
    with _storage(db) as storage:
        if storage.add_token(name, hash_token(token), label,
                             dt.datetime.now(dt.timezone.utc)) is None:
            raise click.ClickException(f"no user {name!r}")
        _audit(storage, "make an API token", name, 201, "ok", label=label)
    click.echo(token)
