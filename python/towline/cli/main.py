"""``towline`` entry point: the click group, global options and error handling.

Every failure ends as one line on stderr, ``Error: <message>``, and exit status
125 (podman's); never a traceback (set ``TOWLINE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

# httpx imports its own command-line client (rich, pygments: ~30 ms) unless that
# import fails, which it tolerates; the towline CLI never uses it. Only this entry
# point does this, so a program that imports towline as a library keeps httpx whole.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from towline import __version__  # noqa: E402
from towline.cli import commands  # noqa: E402
from towline.errors import TowlineError  # noqa: E402

__all__ = ["cli", "main"]

EXIT_ERROR = 125
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", message="towline version %(version)s")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store directory (default: $TOWLINE_ROOT or ~/.local/share/towline).",
)
@click.option(
    "--registries-conf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="registries.conf to use instead of the system's.",
)
@click.pass_context
def cli(ctx: click.Context, root: Path | None, registries_conf: Path | None) -> None:
    """Pull container images into a local store and copy them between transports."""
    ctx.obj = commands.Globals(root=root, registries_conf=registries_conf)


for command in commands.ALL:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line on stderr."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not cli.main(): on Ctrl-C it prints a blank line before anything we could say.
        with cli.make_context("towline", args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # Usage errors included: podman exits 125 for a bad flag as for any failure.
        _fail(exc.format_message(), exc)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("Error: interrupted; the store is unchanged", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except TowlineError as exc:
        _fail(str(exc), exc)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", exc)
    except Exception as exc:  # the promise is "never a traceback", even for our bugs
        _fail(
            f"internal error: {type(exc).__name__}: {exc}; please report it "
            "(TOWLINE_DEBUG=1 shows the traceback)",
            exc,
        )


def _fail(message: str, exc: BaseException) -> None:
    if os.environ.get("TOWLINE_DEBUG"):
        raise exc
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
