"""Running the ``towline`` CLI in a subprocess, isolated from the host's configuration.

:class:`TowlineCLI` starts ``python -m towline.cli.main`` (the same code as the ``towline``
console script) with an environment built from scratch: ``HOME``, ``TOWLINE_CONFIG_ROOT``
and ``TOWLINE_ROOT`` point into the test's temporary directory, so no registries.conf,
auth file or store of the machine is read. :class:`Result` holds what one run printed,
with the checks every CLI test repeats (``Error: `` line, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR

import towline

#: Exit status of every failure, as podman's.
EXIT_ERROR = 125
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130

#: The lines a pull may print on stderr before it fails (podman's words).
PROGRESS_PREFIXES = (
    "Trying to pull ",
    "Resolving ",
    "Resolved ",
    "Getting image source signatures",
    "Copying blob ",
    "Copying config ",
    "Writing manifest to image destination",
    "Failed, retrying in ",
    "WARNING: ",
)

#: The directory holding the ``towline`` package the tests import (``python/``).
PYTHON_SOURCE = Path(towline.__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    """One finished run: its arguments, exit status and output."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> Result:
        """Assert the run succeeded, without a traceback; return self to chain."""
        assert self.returncode == 0, self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        return self

    def error(self, status: int = EXIT_ERROR) -> str:
        """Assert the run failed as the CLI promises; return the message after ``Error: ``.

        The promise: exit ``status``, nothing on stdout, no traceback, and exactly one
        ``Error: `` line on stderr, the last one, after nothing but podman's progress lines.
        """
        assert self.returncode == status, self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        assert self.stdout == "", self.describe()
        lines = self.stderr.splitlines()
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], self.describe()
        others = lines[:-1]
        assert all(line.startswith(PROGRESS_PREFIXES) for line in others), self.describe()
        message = errors[0].removeprefix("Error: ")
        assert message.strip(), self.describe()
        return message

    @property
    def ids(self) -> list[str]:
        """The lines of stdout (a pull prints one image ID per line)."""
        return self.stdout.splitlines()

    def describe(self) -> str:
        """The run, for assertion messages."""
        return (
            f"towline {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}---"
        )


class TowlineCLI:
    """Runs ``towline`` with its store in ``root`` and its configuration under ``home``.

    ``TOWLINE_CONFIG_ROOT`` (standing in for ``/`` when towline looks for
    ``/etc/containers/…``) is ``home/config-root``; ``HOME`` is ``home``.
    """

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.config_root = home / "config-root"
        self.config_root.mkdir(parents=True, exist_ok=True)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a run: nothing of the host's but PATH."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(PYTHON_SOURCE),
            "HOME": str(self.home),
            "TOWLINE_CONFIG_ROOT": str(self.config_root),
            "TOWLINE_ROOT": str(self.root),
            "LANG": "C.UTF-8",
            "TERM": "xterm",
        }
        env.update(extra or {})
        return env

    def command(self, *args: str) -> list[str]:
        """The argv of ``towline ARGS…``."""
        return [sys.executable, "-m", "towline.cli.main", *args]

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> Result:
        """Run ``towline ARGS…`` to completion (stdin empty) and return what it printed."""
        done = subprocess.run(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=timeout,
            check=False,
        )
        return Result(tuple(args), done.returncode, done.stdout, done.stderr)

    def snapshot(self) -> dict[str, int]:
        """Every file and directory of the store but the database: path -> size (-1: dir).

        The database is compared through ``towline images`` instead: SQLite may
        rewrite its file without changing what it holds.
        """
        if not self.root.exists():
            return {}
        out = {}
        for path in sorted(self.root.rglob("*")):
            if not path.name.startswith("towline.db"):
                st = path.lstat()
                out[str(path.relative_to(self.root))] = -1 if S_ISDIR(st.st_mode) else st.st_size
        return out

    def pull(self, name: str, *args: str) -> str:
        """``towline pull --tls-verify=false --quiet ARGS… NAME``; return the one image ID."""
        result = self("pull", "--tls-verify=false", "--quiet", *args, name).ok()
        assert len(result.ids) == 1, result.describe()
        return result.ids[0]
