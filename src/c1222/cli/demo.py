"""`c1222 demo`: what the project can show today.

Until the meter, head-end and display exist, the demo writes a capture of
every C12.22 service (made by our own encoder), then decodes it as
`c1222 decode` would.
"""

from __future__ import annotations

from pathlib import Path

import click

from c1222.cli.codec import decode
from c1222.codec import samples
from c1222.transport.pcap import PcapWriter


def write_sample_capture(path: Path) -> int:
    """Every sample exchange over one TCP connection on port 1153; returns the message count."""
    messages = samples.messages()
    with PcapWriter.open(path, start_time=1_700_000_000.0) as writer:
        conn = writer.tcp_connection(("192.0.2.10", 40000), ("192.0.2.20", 1153))
        for i, apdu in enumerate(messages):
            conn.send(apdu.encode(), from_client=i % 2 == 0)
        conn.close()
    return len(messages)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("out"),
              show_default=True, help="Folder for the demo capture.")
@click.pass_context
def demo(ctx: click.Context, out: Path) -> None:
    """Write a capture of every C12.22 service and decode it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "c1222-demo.pcap"
    count = write_sample_capture(path)
    ctx.invoke(decode, inputs=(str(path),))
    click.echo(f"{count} messages written to {path}; open it in Wireshark, or run "
               f"`c1222 decode --json {path}`.")
