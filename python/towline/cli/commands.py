"""The subcommands: pull, images, inspect, rmi, unpack; :data:`ALL` lists every one.

``copy`` is in :mod:`~towline.cli.copy_commands`; ``save``, ``load`` and ``tag`` in
:mod:`~towline.cli.image_commands`.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from towline.cli.copy_commands import copy
from towline.cli.image_commands import load, save, tag
from towline.cli.shared import Globals, PodmanBoolsCommand, pass_globals, reporting
from towline.image import Image
from towline.options import PullOptions

__all__ = ["ALL", "Globals"]


@click.command(cls=PodmanBoolsCommand)
@click.argument("name")
@click.option(
    "--policy",
    "--pull",
    "policy",
    default=None,
    help="always, missing (default), newer or never.",
)
@click.option("--platform", default=None, help="os/arch[/variant] to pick from an index.")
@click.option("--all-tags", "-a", is_flag=True, help="Pull every tag of the repository.")
@click.option("--creds", default=None, metavar="USER:PASS", help="Registry credentials.")
@click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Auth file to use instead of the default ones.",
)
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory with *.crt, *.cert and *.key for the registry.",
)
@click.option(
    "--tls-verify",
    type=click.BOOL,
    default=None,
    help="Require HTTPS and verify certificates (default: true unless registries.conf "
    "marks the registry insecure).",
)
@click.option("--retry", type=click.IntRange(min=0), default=None, help="Retries per request.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@pass_globals
def pull(
    g: Globals,
    name: str,
    policy: str | None,
    platform: str | None,
    all_tags: bool,
    creds: str | None,
    authfile: Path | None,
    cert_dir: Path | None,
    tls_verify: bool | None,
    retry: int | None,
    quiet: bool,
) -> None:
    """Pull NAME into the store and print the image ID(s)."""
    with ExitStack() as stack:
        writer, progress = reporting(stack, sys.stderr, quiet)
        options = PullOptions(
            platform=platform,
            all_tags=all_tags,
            writer=writer,
            progress=progress,
            credentials=creds,
            auth_file=authfile,
            cert_dir=cert_dir,
            registries_conf=g.registries_conf,
            tls_verify=tls_verify,
            max_retries=retry,
        )
        rt = stack.enter_context(g.runtime())
        images = rt.pull(name, policy, options)
    for image in images:
        click.echo(image.id)


def _created(image: Image) -> str:
    return image.created or ""


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} GB"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_globals
def images(g: Globals, fmt: str) -> None:
    """List the images in the store."""
    with g.runtime() as rt:
        listed = rt.list_images()
        if fmt == "json":
            rows = [
                {
                    "id": i.id,
                    "names": i.names,
                    "digest": i.digest,
                    "created": _created(i),
                    "size": i.size,
                }
                for i in listed
            ]
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo(f"{'REPOSITORY':<50} {'TAG':<20} {'IMAGE ID':<14} {'SIZE':>10}")
        for image in listed:
            for repo, tag in _repo_tags(image):
                click.echo(f"{repo:<50} {tag:<20} {image.id[:12]:<14} {_size(image.size):>10}")


def _repo_tags(image: Image) -> list[tuple[str, str]]:
    if not image.names:
        return [("<none>", "<none>")]
    out = []
    for name in image.names:
        repo, _, tag = name.rpartition(":") if "@" not in name else (name, "", "<none>")
        if "/" in tag:  # a port, not a tag
            repo, tag = name, "<none>"
        out.append((repo, tag))
    return out


@click.command()
@click.argument("name")
@pass_globals
def inspect(g: Globals, name: str) -> None:
    """Print an image's metadata as JSON."""
    with g.runtime() as rt:
        image, _ = rt.lookup_image(name)
        doc: dict[str, Any] = {
            "id": image.id,
            "names": image.names,
            "digest": image.digest,
            "digests": image.digests,
            "platform": image.platform,
            "created": image.created,
            "size": image.size,
            "config": image.config,
            "layers": [
                {
                    "digest": x.digest,
                    "diff_id": x.diff_id,
                    "size": x.size,
                    "uncompressed_size": x.uncompressed_size,
                    "media_type": x.media_type,
                }
                for x in image.layers
            ],
        }
        click.echo(json.dumps(doc, indent=2))


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Remove an image even if it has several names.")
@pass_globals
def rmi(g: Globals, names: tuple[str, ...], force: bool) -> None:
    """Remove images (or, by name, one name of an image)."""
    with g.runtime() as rt:
        for name in names:
            for line in rt.remove_image(name, force=force):
                click.echo(line)


@click.command()
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@pass_globals
def unpack(g: Globals, name: str, directory: Path) -> None:
    """Write the image's root filesystem (all layers applied) to DIRECTORY."""
    with g.runtime() as rt:
        image, _ = rt.lookup_image(name)
        image.unpack(directory)


ALL = [pull, images, inspect, rmi, unpack, copy, save, load, tag]
