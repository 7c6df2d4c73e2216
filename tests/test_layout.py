"""The layout rules of DESIGN.md, enforced by walking every import of every module."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGES = ("eventlog", "capture", "replay", "cli")
MAY_IMPORT = {
    "eventlog": set(),
    "capture": {"eventlog"},
    "replay": {"eventlog"},
    "cli": {"eventlog", "capture", "replay"},
}
ONE_MODULE_ONLY = ("boto3", "modal", "pygit2", "opentelemetry", "google.protobuf")


def _imports(path: Path) -> set[str]:
    """Top-level names imported by a module (relative imports resolved to our packages)."""
    tree = ast.parse(path.read_text(), str(path))
    package_parts = path.relative_to(REPO).parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                names.add("agtrace." + ".".join(base) if base else "agtrace.?")
            elif node.module:
                names.add(node.module)
    return names


def _modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def test_packages_import_only_what_design_allows():
    for package in PACKAGES:
        for module in _modules(package):
            for name in _imports(module):
                parts = name.split(".")
                if parts[0] in PACKAGES:
                    raise AssertionError(f"{module}: imports {name} without the agtrace. prefix")
                if parts[0] != "agtrace":
                    continue
                target = parts[1] if len(parts) > 1 else "?"
                assert target == package or target in MAY_IMPORT[package], (
                    f"{module.relative_to(REPO)} imports agtrace.{target}; DESIGN.md allows "
                    f"{package}/ to import only {sorted(MAY_IMPORT[package]) or 'nothing of ours'}"
                )


def test_nothing_imports_cli():
    for package in ("eventlog", "capture", "replay"):
        for module in _modules(package):
            assert not any(n.startswith("agtrace.cli") for n in _imports(module)), module


def test_adapter_libraries_are_each_imported_in_one_module():
    for lib in ONE_MODULE_ONLY:
        users = [
            m.relative_to(REPO).as_posix()
            for p in PACKAGES
            for m in _modules(p)
            if any(n == lib or n.startswith(lib + ".") for n in _imports(m))
        ]
        assert len(users) <= 1, f"{lib} is imported in {users}; keep it in one module"


def test_public_names_are_exported():
    import agtrace.capture
    import agtrace.eventlog
    import agtrace.replay

    for mod in (agtrace.eventlog, agtrace.capture, agtrace.replay):
        assert mod.__all__, mod
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ names missing {name}"


def test_every_package_directory_is_installed():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            sub = init.parent.relative_to(REPO / folder).parts
            package = ".".join((name, *sub))
            assert package in listed, f"{package} is not in pyproject's packages; it would not install"


def test_no_public_name_shadows_a_submodule():
    """`from .x import x` in a package __init__ would make `agtrace.pkg.x` the function, not the
    module (monkeypatch paths and attribute access then break)."""
    import importlib

    for package in ("eventlog", "capture", "replay"):
        mod = importlib.import_module(f"agtrace.{package}")
        modules = {p.stem for p in (REPO / package).glob("*.py")} | {
            p.name for p in (REPO / package).iterdir() if (p / "__init__.py").exists()
        }
        shadowed = [n for n in mod.__all__ if n in modules and not hasattr(getattr(mod, n), "__path__")
                    and not hasattr(getattr(mod, n), "__file__")]
        assert not shadowed, f"agtrace.{package} exports {shadowed}, which shadow its submodules"
