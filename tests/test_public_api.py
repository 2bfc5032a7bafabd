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
