"""The layout rules of DESIGN.md, enforced by walking every import of every module.

What is checked (each module is parsed once):

* a package imports only what DESIGN.md allows, and nothing imports ``cli``;
* another package is imported through its root only (``from agtrace.eventlog import X``,
  never ``agtrace.eventlog.gitstore``);
* ``importlib.import_module`` / ``__import__`` take only a name relative to the caller's own
  package, so string imports cannot dodge the two rules above or the one below;
* boto3, botocore, modal, pygit2, opentelemetry and google.protobuf are each imported in one
  module (boto3 and botocore in the same one);
* no module of eventlog/ capture/ replay/ cli/ is over 500 lines;
* every ``__all__`` is sorted (constants, classes, then functions, as ruff's isort style); each
  package root's lazy table is complete: it holds every name that any code, test, benchmark or
  doc imports from the root, and every name resolves.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

from .conftest import REPO

PACKAGES = ("eventlog", "capture", "replay", "cli")
MAY_IMPORT = {
    "eventlog": set(),
    "capture": {"eventlog"},
    "replay": {"eventlog"},
    "cli": {"eventlog", "capture", "replay"},
}
ONE_MODULE_ONLY = ("boto3", "botocore", "modal", "pygit2", "opentelemetry", "google.protobuf")
SAME_MODULE = ("boto3", "botocore")
MAX_LINES = 500
ROOTS = ("eventlog", "capture", "replay")


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _all_code() -> list[Path]:
    """Every Python file whose root imports the completeness check covers."""
    return [p for p in (*(m for pkg in PACKAGES for m in _modules(pkg)), *sorted((REPO / "tests").rglob("*.py")),
                        *sorted((REPO / "bench").glob("*.py"))) if "golden" not in p.parts]


@functools.cache
def _imports(path: Path) -> tuple[tuple[str, list[str]], ...]:
    """``(module, names)`` of every import in a module; relative imports resolved to
    ``agtrace.<package>...``; ``names`` is empty for ``import x``."""
    package_parts = path.relative_to(REPO).parts[:-1]
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = "agtrace." + ".".join(base) if base else "agtrace.?"
                if node.module:
                    module += "." + node.module
                found.append((module, names))
            elif node.module:
                found.append((node.module, names))
    return tuple(found)


def _package_of(path: Path) -> str:
    return path.relative_to(REPO).parts[0]


def test_packages_import_only_what_design_allows():
    for package in PACKAGES:
        for module in _modules(package):
            for name, _ in _imports(module):
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
            assert not any(n.startswith("agtrace.cli") for n, _ in _imports(module)), module


def _submodules(package: str) -> set[str]:
    folder = REPO / package
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").exists()
    }


def test_other_packages_are_imported_through_their_root():
    bad = []
    for package in PACKAGES:
        for module in _modules(package):
            for name, names in _imports(module):
                parts = name.split(".")
                if parts[0] != "agtrace" or len(parts) < 2 or parts[1] == package:
                    continue
                if len(parts) > 2:
                    bad.append(f"{module.relative_to(REPO)}: {name}")
                elif parts[1] in PACKAGES:
                    bad += [f"{module.relative_to(REPO)}: {name}.{n} (a module)"
                            for n in names if n in _submodules(parts[1])]
    assert not bad, "import another package's root only (from agtrace.eventlog import X):\n" + "\n".join(bad)


def _string_import_calls(path: Path):
    """``(line, first argument)`` of every importlib.import_module / __import__ call."""
    aliases = {"__import__"}
    modules = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib":
            aliases.update(a.asname or a.name for a in node.names if a.name in ("import_module", "__import__"))
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "importlib")
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = (isinstance(func, ast.Name) and func.id in aliases) or (
            isinstance(func, ast.Attribute) and func.attr in ("import_module", "__import__")
            and isinstance(func.value, ast.Name) and func.value.id in modules
        )
        if called:
            yield node.lineno, node.args[0] if node.args else None


def _relative_to_own_package(arg) -> bool:
    """A constant or f-string that starts with exactly one dot: a module of the caller's package."""
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if not (isinstance(head, ast.Constant) and isinstance(head.value, str)):
            return False
        after = arg.values[1] if head.value == "." and len(arg.values) > 1 else None
        return bool(re.match(r"\.[^.]", head.value)) or isinstance(after, ast.FormattedValue)
    return isinstance(arg, ast.Constant) and isinstance(arg.value, str) and bool(re.match(r"\.[^.]", arg.value))


def test_string_imports_stay_inside_their_package():
    bad = []
    for package in PACKAGES:
        for module in _modules(package):
            for line, arg in _string_import_calls(module):
                if not _relative_to_own_package(arg):
                    bad.append(f"{module.relative_to(REPO)}:{line}: {ast.unparse(arg) if arg else '?'}")
    assert not bad, ("importlib/__import__ may only load a module of the caller's own package by a "
                     "relative name ('.x'); import other packages and libraries with import statements:\n"
                     + "\n".join(bad))


def test_lazy_tables_name_modules_of_their_own_package():
    for package in ROOTS:
        for name, target in _lazy_table(package).items():
            module = target if isinstance(target, str) else target[0]
            assert not module.startswith("."), f"agtrace.{package}: {name} -> {module}"
            path = REPO / package / Path(*module.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), (
                f"agtrace.{package}._EXPORTS[{name!r}] names {module}, which is not a module of {package}/"
            )


def test_adapter_libraries_are_each_imported_in_one_module():
    users = {}
    for lib in ONE_MODULE_ONLY:
        users[lib] = [
            m.relative_to(REPO).as_posix()
            for p in PACKAGES
            for m in _modules(p)
            if any(n == lib or n.startswith(lib + ".") for n, _ in _imports(m))
        ]
        assert len(users[lib]) <= 1, f"{lib} is imported in {users[lib]}; keep it in one module"
    homes = {tuple(users[lib]) for lib in SAME_MODULE if users[lib]}
    assert len(homes) <= 1, f"boto3 and botocore belong in the same one module: {users}"


def test_no_module_is_over_the_line_cap():
    long = [(m.relative_to(REPO).as_posix(), n) for p in PACKAGES for m in _modules(p)
            if (n := len(m.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them along their responsibilities): {long}"


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's isort-style order for __all__: SCREAMING_CASE, then CamelCase, then the rest."""
    if len(name) > 1 and name.isupper():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def _literal_all(path: Path) -> tuple[int, list[str]] | None:
    for node in _tree(path).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple))
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)):
            return node.lineno, [ast.literal_eval(e) for e in node.value.elts]
    return None


def _lazy_table(package: str) -> dict:
    for node in _tree(REPO / package / "__init__.py").body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                return ast.literal_eval(node.value)
    raise AssertionError(f"{package}/__init__.py has no _EXPORTS table")


def test_every_all_is_sorted():
    for package in PACKAGES:
        for module in _modules(package):
            found = _literal_all(module)
            if found is None:
                continue
            line, names = found
            assert names == sorted(names, key=_isort_key), (
                f"{module.relative_to(REPO)}:{line}: __all__ is not sorted; expected {sorted(names, key=_isort_key)}"
            )
    for package in ROOTS:
        names = list(_lazy_table(package))
        assert names == sorted(names, key=_isort_key), f"agtrace.{package}._EXPORTS is not sorted"


def _documented_root_imports() -> list[tuple[str, str, str]]:
    """``(where, package, name)`` of every ``from agtrace.<root> import ...`` in the docs."""
    found = []
    pattern = re.compile(r"from agtrace\.(eventlog|capture|replay) import (\([\w,\s]+\)|[\w, ]+)")
    for doc in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        for match in pattern.finditer(doc.read_text()):
            for name in re.split(r"[(),\s]+", match.group(2)):
                if name:
                    found.append((doc.name, match.group(1), name))
    return found


def test_root_exports_are_complete():
    exported = {package: set(_lazy_table(package)) for package in ROOTS}
    missing = []
    for path in _all_code():
        for module, names in _imports(path):
            parts = module.split(".")
            if len(parts) == 2 and parts[0] == "agtrace" and parts[1] in exported and parts[1] != _package_of(path):
                missing += [f"{path.relative_to(REPO)}: {module}.{n}" for n in names
                            if n not in exported[parts[1]] and n not in _submodules(parts[1]) and n != "*"]
    for where, package, name in _documented_root_imports():
        if name not in exported[package]:
            missing.append(f"{where}: agtrace.{package}.{name}")
    assert not missing, "names imported from a root that its _EXPORTS lacks:\n" + "\n".join(missing)


def test_public_names_resolve():
    for package in ROOTS:
        mod = importlib.import_module(f"agtrace.{package}")
        assert mod.__all__ == list(_lazy_table(package)), f"agtrace.{package}.__all__ must list _EXPORTS"
        for name in mod.__all__:
            assert getattr(mod, name, None) is not None, f"agtrace.{package}.{name} does not resolve"
        assert set(mod.__all__) <= set(dir(mod)), f"dir(agtrace.{package}) must list every export"


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
    """A root export named like a submodule would be replaced by that module as soon as the
    module is imported (attribute access and monkeypatch paths then break)."""
    for package in ROOTS:
        shadowed = sorted(set(_lazy_table(package)) & _submodules(package))
        assert not shadowed, f"agtrace.{package} exports {shadowed}, which shadow its submodules"
