"""``towline copy``: one image between any two transports, as ``skopeo copy``.

skopeo's words, flags and output: both names need a transport prefix, progress
("Getting image source signatures", "Copying blob …", "Copying config …",
"Writing manifest to image destination") goes to stdout (bars when stdout is a
terminal), ``-q`` silences it. Errors end as every towline error does
(``Error: …``, exit 125), where skopeo exits 1.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

import click

from towline.cli.shared import Globals, PodmanBoolsCommand, pass_globals, reporting
from towline.errors import TransportError
from towline.options import PullOptions
from towline.transports import split_transport

__all__ = ["copy"]


def _require_transport(name: str, role: str) -> None:
    """skopeo's rule: SRC and DST are ``transport:reference`` names, never plain names."""
    if split_transport(name)[0] is None:
        raise TransportError(
            f"Invalid {role} name {name}: Invalid image name {name!r}, expected "
            f"colon-separated transport:reference (e.g. docker://{name}, oci:DIR[:REF], "
            f"containers-storage:{name})",
            slug="invalid_transport_name",
        )


@click.command(cls=PodmanBoolsCommand)
@click.argument("source")
@click.argument("destination")
@click.option("--all", "-a", "all_images", is_flag=True, help="Copy every image of an index.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to pick from an index (default: this machine's).",
)
@click.option("--src-creds", default=None, metavar="USER:PASS", help="Source registry credentials.")
@click.option(
    "--dest-creds", default=None, metavar="USER:PASS", help="Destination registry credentials."
)
@click.option(
    "--src-tls-verify",
    type=click.BOOL,
    default=None,
    help="Require HTTPS and verify certificates of a docker:// source.",
)
@click.option(
    "--dest-tls-verify",
    type=click.BOOL,
    default=None,
    help="Require HTTPS and verify certificates of a docker:// destination.",
)
@click.option(
    "--preserve-digests",
    is_flag=True,
    help="Fail rather than convert a manifest (which would change its digest).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@pass_globals
def copy(
    g: Globals,
    source: str,
    destination: str,
    all_images: bool,
    platforms: tuple[str, ...],
    src_creds: str | None,
    dest_creds: str | None,
    src_tls_verify: bool | None,
    dest_tls_verify: bool | None,
    preserve_digests: bool,
    quiet: bool,
) -> None:
    """Copy the image SOURCE to DESTINATION, both transport:reference names."""
    _require_transport(source, "source")
    _require_transport(destination, "destination")
    if len(platforms) > 1:
        raise click.UsageError(
            f"--platform was given {len(platforms)} times; copying several platforms "
            "(but not all) is not supported yet: give one --platform, or --all"
        )
    if platforms and all_images:
        raise click.UsageError("--all copies every platform: give either --all or --platform")
    # Only docker:// uses credentials and TLS settings, and only as a source so far
    # (a docker:// destination is refused by the transport); dest_creds and
    # dest_tls_verify are accepted for skopeo's command lines.
    del dest_creds, dest_tls_verify
    with ExitStack() as stack:
        writer, progress = reporting(stack, sys.stdout, quiet)
        options = PullOptions(
            platform=platforms[0] if platforms else None,
            writer=writer,
            progress=progress,
            credentials=src_creds,
            registries_conf=g.registries_conf,
            tls_verify=src_tls_verify,
        )
        rt = stack.enter_context(g.runtime())
        rt.copy(
            source,
            destination,
            options,
            all_platforms=all_images,
            preserve_digests=preserve_digests,
        )
