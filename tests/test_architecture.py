"""Guards of the house (issue 8): the layering of the wings, the size of modules and functions, and
ruff and mypy clean — so the structure stays as decision 0016 draws it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WINGS = ("core", "proxy", "ai", "api", "accounts", "payments")
# Who may import whom, besides themselves, core and ledger (which everyone may use).
#   cli → server → app → api | admin_ui → ai | proxy | payments → accounts → core → ledger
MAY_IMPORT = {
    "core": set(),
    "accounts": set(),
    "proxy": {"accounts"},
    "ai": {"accounts"},
    "payments": {"accounts"},
    "api": {"accounts", "ai", "proxy", "payments"},
}
MODULE_LINES_MAX = 400
FUNCTION_LINES_MAX = 70
# Modules or functions allowed past the limits, each with its reason. Empty today: keep it short.
SIZE_EXCEPTIONS: dict[str, str] = {}


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in the file names (TYPE_CHECKING blocks and function bodies too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gateway":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "top"


@pytest.mark.parametrize("path", python_files("gateway"), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_wing_imports_only_the_wings_below_it(path):
    relative = path.relative_to(ROOT / "gateway")
    if len(relative.parts) == 1:
        return  # app.py, server.py, cli.py wire the wings together
    wing = relative.parts[0]
    allowed = MAY_IMPORT[wing] | {wing, "core"}
    wrong = sorted(module for module in imported_modules(path)
                   if (target := wing_of(module)) is not None and target not in allowed)
    assert not wrong, f"{relative} ({wing}) imports {wrong}"


@pytest.mark.parametrize("path", python_files("gateway", "ledger", "admin_ui"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_never_imports_the_dev_kit_the_bench_or_the_tests(path):
    wrong = sorted(module for module in imported_modules(path)
                   if module.split(".")[0] in ("devkit", "bench", "tests"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("admin_ui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_admin_ui_stands_beside_the_json_api_never_above_the_wiring(path):
    """The UI is a sibling of gateway/api: it may use the wings, never app/server/cli, and no wing
    imports it (only gateway/app.py mounts it)."""
    wrong = sorted(module for module in imported_modules(path) if wing_of(module) == "top")
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("gateway"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_wiring_mounts_the_admin_ui(path):
    if path.relative_to(ROOT / "gateway").parts[0] in ("app.py", "server.py", "cli.py"):
        return
    wrong = sorted(module for module in imported_modules(path) if module.split(".")[0] == "admin_ui")
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("ledger"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_ledger_imports_nothing_of_the_gateway(path):
    wrong = sorted(module for module in imported_modules(path) if module.split(".")[0] == "gateway")
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_modules_and_functions_stay_small_enough_to_see_whole():
    too_big = []
    for path in python_files("gateway", "ledger", "devkit", "admin_ui"):
        name = str(path.relative_to(ROOT))
        text = path.read_text()
        if text.count("\n") > MODULE_LINES_MAX and name not in SIZE_EXCEPTIONS:
            too_big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES_MAX and f"{name}:{node.name}" not in SIZE_EXCEPTIONS:
                    too_big.append(f"{name}:{node.name}: {lines} lines")
    assert not too_big, too_big


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in this environment (pyproject's test extras)")
    return found


def test_ruff_finds_nothing():
    done = subprocess.run([tool("ruff"), "check", "gateway", "ledger", "admin_ui", "devkit", "bench", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_the_gateway_and_the_ledger():
    done = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_installed_product_holds_no_dev_kit_mock_bench_or_tests(tmp_path):
    """What `pip install .` (and so the image) installs: the product's packages and data only."""
    import zipfile

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("tollgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("tollgate-")}
    assert top_level == {"gateway", "ledger", "admin_ui", "migrations"}, top_level
    assert not [name for name in names if "mock" in name or "devkit" in name or "/dev.py" in name], names
    assert "gateway/proxy/lua/authenticate.lua" in names and "gateway/ai/lua/api_key.lua" in names
    assert "admin_ui/templates/base.html" in names and "admin_ui/static/admin.css" in names
    assert any(name.startswith("migrations/") and name.endswith(".sql") for name in names)
