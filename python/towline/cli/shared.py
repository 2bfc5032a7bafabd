"""What every subcommand module shares: the global options, podman's bools, progress output."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from towline.events import ProgressEvent
from towline.runtime import Runtime

__all__ = ["Globals", "PodmanBoolsCommand", "pass_globals", "reporting"]


@dataclass(frozen=True)
class Globals:
    """Options given before the subcommand."""

    root: Path | None
    registries_conf: Path | None

    def runtime(self) -> Runtime:
        return Runtime(self.root)


pass_globals = click.make_pass_decorator(Globals)

#: Boolean options that, as podman's and skopeo's (pflag) do, mean true when given alone.
_BARE_TRUE_OPTIONS = frozenset({"--tls-verify", "--src-tls-verify", "--dest-tls-verify"})


class PodmanBoolsCommand(click.Command):
    """Reads boolean options as podman does: ``--tls-verify`` alone means true, and a
    value must be attached (``--tls-verify=false``), so ``--tls-verify NAME`` keeps NAME."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _attach_true(args))


def _attach_true(args: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":  # the rest are arguments, even if they look like options
            return out + args[i:]
        out.append(f"{arg}=true" if arg in _BARE_TRUE_OPTIONS else arg)
    return out


def reporting(
    stack: ExitStack, stream: TextIO, quiet: bool
) -> tuple[TextIO | None, Callable[[ProgressEvent], None] | None]:
    """The ``writer`` and ``progress`` of a copy that reports on ``stream``.

    Quiet: neither. On a terminal: live bars (closed with ``stack``) with the other
    lines above them. Elsewhere: podman's plain lines.
    """
    if quiet:
        return None, None
    if not stream.isatty():
        return stream, None
    # Imported here: rich costs ~20 ms of start-up that scripts and pipes never use.
    from towline.cli.progress import LiveProgress

    progress = stack.enter_context(LiveProgress(stream))
    return progress.lines, progress
