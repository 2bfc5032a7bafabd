"""The public surface: towline's exported names, and the layering rules between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import towline

PACKAGE = Path(towline.__file__).parent


def test_all_is_sorted_and_complete() -> None:
    assert towline.__all__ == sorted(towline.__all__)
    for name in towline.__all__:
        obj = getattr(towline, name)
        assert getattr(obj, "__module__", "towline") == "towline", name


def test_design_contract_names_exist() -> None:
    for name in ("Runtime", "PullOptions", "Image", "Layer", "Event", "parse_reference"):
        assert name in towline.__all__
    for error in (
        "ImageUnknownError",
        "ShortNameError",
        "ManifestUnknownError",
        "PlatformNotFoundError",
        "AuthenticationError",
        "DigestMismatchError",
        "InvalidReferenceError",
        "TransportError",
        "PolicyError",
    ):
        assert issubclass(getattr(towline, error), towline.TowlineError)


def imports_of(module: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_copy_knows_no_concrete_transport() -> None:
    imported = imports_of(PACKAGE / "copy.py")
    assert "towline.transports.base" in imported
    assert not {
        m
        for m in imported
        if m.startswith("towline.transports.") and m != "towline.transports.base"
    }
    assert not {m for m in imported if m.startswith("towline.registry")}


def test_only_the_cli_imports_click_and_rich() -> None:
    for module in PACKAGE.rglob("*.py"):
        if "cli" in module.relative_to(PACKAGE).parts:
            continue
        roots = {m.split(".")[0] for m in imports_of(module)}
        assert not roots & {"click", "rich"}, module


def test_version_comes_from_cargo_toml_and_matches_the_installed_metadata() -> None:
    import importlib.metadata
    import tomllib

    cargo = tomllib.loads((PACKAGE.parents[1] / "Cargo.toml").read_text())
    assert towline.__version__ == cargo["package"]["version"]
    assert importlib.metadata.version("towline") == towline.__version__


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_towline_leaves_httpx_until_the_runtime_is_used() -> None:
    # Start-up time: parse_reference and the errors need no HTTP stack.
    assert "httpx" not in _modules_after("import towline; towline.parse_reference('alpine')")
    assert "httpx" in _modules_after("import towline; towline.Runtime")
    assert towline.Runtime.__module__ == "towline"
    assert "Runtime" in dir(towline)


def test_the_cli_loads_neither_rich_nor_httpx_own_cli_off_a_terminal() -> None:
    # ~50 ms of every `towline pull` in scripts: rich only draws bars on a terminal,
    # and httpx's command-line client is never used.
    loaded = _modules_after("import towline.cli.main")
    assert "httpx" in loaded
    assert not {m for m in loaded if m.split(".")[0] in {"rich", "pygments"}}


def test_a_library_import_keeps_httpx_whole() -> None:
    assert "httpx._main" in _modules_after("import towline; towline.Runtime; import httpx._main")
