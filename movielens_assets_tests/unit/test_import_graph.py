"""The code location never imports the tooling (``movielens_assets/tools``).

What Dagster loads (``definitions.py``, ``defs/``, ``lib/``, ``warehouse/``, ``resources.py``,
``settings.py``, ``project.py``, ``datasets.py``) must not pull in the bench, the generator, the
loopback S3 server or the command line: they are heavy, and a deployment does not need them.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "movielens_assets"
TOOLS = "movielens_assets.tools"


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth of its code."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def code_location_files() -> list[Path]:
    return [
        path for path in PACKAGE.rglob("*.py") if "tools" not in path.relative_to(PACKAGE).parts
    ]


def test_no_module_of_the_code_location_imports_the_tooling():
    files = code_location_files()
    assert PACKAGE / "definitions.py" in files and len(files) > 20
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in imported_modules(path) if m.startswith(TOOLS)
        )
        for path in files
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_scan_sees_an_import_of_the_tooling(tmp_path):
    """The check above would catch one: a file that imports the tooling inside a function."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from movielens_assets.tools import bench\n")
    assert "movielens_assets.tools.bench" in imported_modules(sneaky)
