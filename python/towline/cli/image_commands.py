"""``towline save``, ``load`` and ``tag``, with podman's flags and output.

Progress lines go to stderr (bars on a terminal) as podman's; ``load`` prints
``Loaded image: NAME`` on stdout per name (``sha256:<id>`` for an unnamed image).
Without ``-o``, ``save`` writes the archive to stdout unless that is a terminal;
without ``-i``, ``load`` reads it from stdin unless that is a terminal (podman).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from towline.archives import SAVE_FORMATS
from towline.cli.shared import Globals, pass_globals, reporting
from towline.options import PullOptions

__all__ = ["load", "save", "tag"]

_DIRECTORY_FORMATS = ("oci-dir", "docker-dir")


def _spool_dir(stack: ExitStack) -> Path:
    """A private temporary directory, removed when ``stack`` closes."""
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="towline-")))


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Archive (or directory, for oci-dir and docker-dir) to write; default: stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(SAVE_FORMATS)),
    default="docker-archive",
    show_default=True,
    help="What to write.",
)
@click.option(
    "--multi-image-archive",
    "-m",
    "multi_image",
    is_flag=True,
    help="Every NAME is an image (docker-archive, oci-archive); without it, "
    "the other NAMEs are more names for the first image.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@pass_globals
def save(
    g: Globals,
    names: tuple[str, ...],
    output: Path | None,
    fmt: str,
    multi_image: bool,
    quiet: bool,
) -> None:
    """Write images of the store to an archive or a directory."""
    with ExitStack() as stack:
        target = output
        if output is None:
            if sys.stdout.isatty():
                raise click.UsageError("refusing to save to terminal. Use -o flag or redirect")
            if fmt in _DIRECTORY_FORMATS:
                raise click.UsageError(f"--format {fmt} writes a directory: name it with -o DIR")
            quiet = True  # as podman: the archive is the only output
            target = _spool_dir(stack) / "archive.tar"
        assert target is not None
        writer, progress = reporting(stack, sys.stderr, quiet)
        options = PullOptions(writer=writer, progress=progress, registries_conf=g.registries_conf)
        rt = stack.enter_context(g.runtime())
        rt.save(list(names), target, fmt, multi_image=multi_image, options=options)
        if output is None:
            with open(target, "rb") as archive:
                shutil.copyfileobj(archive, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()


@click.command()
@click.option(
    "--input",
    "-i",
    "input_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Archive (or directory) to read; default: stdin.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@pass_globals
def load(g: Globals, input_path: Path | None, quiet: bool) -> None:
    """Store every image of a docker-archive or oci-archive (or oci:/dir: directory)."""
    with ExitStack() as stack:
        path = input_path
        if path is None:
            if sys.stdin.isatty():
                raise click.UsageError(
                    "cannot read from terminal, use command-line redirection or the --input flag"
                )
            path = _spool_dir(stack) / "archive.tar"
            with open(path, "wb") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        writer, progress = reporting(stack, sys.stderr, quiet)
        options = PullOptions(writer=writer, progress=progress, registries_conf=g.registries_conf)
        rt = stack.enter_context(g.runtime())
        images = rt.load(path, options)
    for image in images:
        for name in image.names or [f"sha256:{image.id}"]:
            click.echo(f"Loaded image: {name}")


@click.command()
@click.argument("name")
@click.argument("new_names", nargs=-1, required=True)
@pass_globals
def tag(g: Globals, name: str, new_names: tuple[str, ...]) -> None:
    """Give the image NAME more names (each moves from any image that had it)."""
    with g.runtime() as rt:
        rt.tag(name, *new_names)
