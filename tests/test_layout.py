"""The layout of tests/: every test file mirrors a module, and no test file imports another."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

# Each test folder mirrors a source folder: tests/<wing>/test_<m>.py stands for gateway/<wing>/<m>.py,
# tests/test_<m>.py for gateway/<m>.py, tests/ledger/, tests/devkit/ and tests/bench/ for ledger/, devkit/
# and bench/ (and a deeper folder for the package of the same path). <m> may be a module or a package.
TOP_LEVEL_PACKAGES = ("ledger", "devkit", "admin_ui", "bench")


def source_folder(test_folder: str) -> str:
    parts = test_folder.split("/")[1:]  # without the leading "tests"
    if parts and parts[0] in TOP_LEVEL_PACKAGES:
        return "/".join(parts)
    return "/".join(["gateway", *parts])


# Modules that the AI split of issue 8 brings (gateway/ai/calls.py and relay.py become one module
# per stage); their tests are already in place. An entry is harmless once its module exists; add a
# name here when a test must land before its module, and remove it if the module is not made.
# Modules a test file may name before they exist (none today: the AI split has landed).
FUTURE_MODULES: dict[str, set[str]] = {}

# Test files that mirror no single module, each with the reason.
WHOLE_SYSTEM = {
    "tests/test_fuzz.py": "hypothesis fuzz of the whole HTTP surface: JSON API, proxy and AI routes at once",
    "tests/test_layout.py": "this guard: the layout of tests/ itself",
    "tests/test_architecture.py": "the house's guards: wing layering, sizes, ruff and mypy over all the code",
    "tests/admin_ui/test_browser.py": "the admin UI in headless Chromium: a staff member's session across its pages",
    "tests/proxy/test_browser.py": "the desktop path in headless Chromium: a browser session's pages, fetches and end",
}

# Helpers are imported from tests/support/; fixtures come by name from a conftest.py, never by import.
FORBIDDEN_IMPORT = re.compile(r"^tests(\.\w+)*\.(test_\w+|conftest)$")


def python_files() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, top level or inside a function, relative imports resolved."""
    package = relative(path.parent).replace("/", ".")
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            modules.append(base)
            modules += [f"{base}.{alias.name}" for alias in node.names]  # `from tests import test_x`
    return modules


def test_no_test_file_imports_another_test_file_or_a_conftest():
    found = [f"{relative(path)} imports {module}" for path in python_files()
             for module in imported_modules(path) if FORBIDDEN_IMPORT.match(module)]
    assert found == [], "import helpers from tests/support/ instead:\n" + "\n".join(found)


def test_every_test_file_is_named_for_a_module():
    unmatched = []
    for path in python_files():
        name = relative(path)
        if not path.name.startswith("test_") or name in WHOLE_SYSTEM:
            continue
        folder = relative(path.parent)
        source = source_folder(folder)
        module = path.stem.removeprefix("test_")
        if not (ROOT / source).is_dir():
            unmatched.append(f"{name}: {folder} mirrors no source folder (no {source}/)")
        elif not ((ROOT / source / f"{module}.py").exists() or (ROOT / source / module / "__init__.py").exists()
                  or module in FUTURE_MODULES.get(source, set())):
            unmatched.append(f"{name}: no {source}/{module}.py")
    assert unmatched == [], "\n".join(unmatched)


def test_every_test_folder_is_a_package():
    # Several wings have modules of the same name (handler, forwarding, authentication): without
    # __init__.py their test files would clash as top-level modules.
    folders = {path.parent for path in python_files()}
    missing = [relative(folder) for folder in folders if not (folder / "__init__.py").exists()]
    assert missing == []


def test_every_file_opens_with_a_docstring():
    missing = [relative(path) for path in python_files()
               if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text())) is None]
    assert missing == []
