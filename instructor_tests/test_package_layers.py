"""The package's tree shows what students write and what is given, and its imports run downward.

``cs288_lm/`` holds the student modules (the files with solution blocks) directly; everything given
lives in a sub-package, in layers (see ``cs288_lm/__init__.py``):

* ``common``: imports nothing of the package outside itself, so a student module may import it;
* the student modules: import ``common`` and each other;
* ``models``: builds on the student modules;
* ``training`` and ``analysis``: library code for the programs;
* ``pipelines``: the programs, which import anything below them but never each other (what two
  programs share is library code in a lower layer).

The one import that runs upward is ``sampling`` (Part 4) using the given key/value cache of
``models.kv_cache`` for its decoding loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

from autograder.make_handout import REPO_ROOT, handout_files
from autograder.markers import student_modules

PACKAGE = REPO_ROOT / "cs288_lm"
LAYERS = {"common": 0, "models": 2, "training": 3, "analysis": 3, "reporting": 4, "pipelines": 5}
STUDENT_LAYER = 1
ALLOWED_UPWARD = {("cs288_lm.sampling", "cs288_lm.models.kv_cache")}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if parts[1] in LAYERS else STUDENT_LAYER


def package_imports(path: Path) -> set[str]:
    """The ``cs288_lm`` modules ``path`` imports (``from cs288_lm.common import plots`` counts as
    ``cs288_lm.common.plots``)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cs288_lm"):
            candidates = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in candidates:  # a sub-module when one exists, else the module itself
                is_module = (REPO_ROOT / Path(*name.split("."))).with_suffix(".py").is_file()
                imported.add(name if is_module else node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("cs288_lm.")}
    return imported - {"cs288_lm"}


def test_student_modules_sit_directly_in_the_package_and_given_code_in_sub_packages() -> None:
    files = handout_files(REPO_ROOT)
    students = {Path(f) for f in student_modules(REPO_ROOT, files)}
    package_files = {Path(f) for f in files if f.startswith("cs288_lm/") and f.endswith(".py")}
    top_level = {f for f in package_files if len(f.parts) == 2 and f.name != "__init__.py"}
    assert students == top_level, "files with solution blocks and top-level modules differ"
    assert {f.parts[1] for f in package_files if len(f.parts) > 2} == set(LAYERS)


def test_imports_run_downward() -> None:
    upward = set()
    for path in PACKAGE.rglob("*.py"):
        importer = module_name(path)
        for imported in package_imports(path):
            if layer(imported) > layer(importer):
                upward.add((importer, imported))
    assert upward == ALLOWED_UPWARD


def test_the_layer_rule_sees_an_upward_import(tmp_path: Path) -> None:
    """The import collector finds both import forms (guards the test above against passing vacuously)."""
    source = tmp_path / "m.py"
    source.write_text("from cs288_lm.pipelines import pretrain\nimport cs288_lm.models.kv_cache\n")
    assert package_imports(source) == {"cs288_lm.pipelines.pretrain", "cs288_lm.models.kv_cache"}


def pipeline_imports(path: Path) -> set[str]:
    """The ``cs288_lm.pipelines`` modules that ``path`` imports (the package itself counts too)."""
    return {
        name for name in package_imports(path) if name == "cs288_lm.pipelines" or name.startswith("cs288_lm.pipelines.")
    }


def test_no_program_imports_another_program() -> None:
    programs = [path for path in (PACKAGE / "pipelines").rglob("*.py") if path.name != "__init__.py"]
    assert programs
    found = {module_name(path): pipeline_imports(path) for path in programs}
    assert {importer: imported for importer, imported in found.items() if imported} == {}


def test_the_program_rule_sees_a_program_importing_another(tmp_path: Path) -> None:
    """Guards the test above: both import forms of a pipelines module are found."""
    source = tmp_path / "m.py"
    source.write_text(
        "from cs288_lm.pipelines.pretrain import main\nfrom cs288_lm.pipelines import sweep\n"
        "import cs288_lm.pipelines.generate\nfrom cs288_lm.training import trainer\n"
    )
    assert pipeline_imports(source) == {
        "cs288_lm.pipelines.pretrain",
        "cs288_lm.pipelines.sweep",
        "cs288_lm.pipelines.generate",
    }
