"""Imports flow one way, commands/ -> reports/ -> pipeline/ -> components/ (and kubeflow/ ->
pipeline/ and components/), and only under the project's own import package: parsed from the sources, so an
import inside a function counts too."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tfx_finetune"
# Each folder, and the folders of the project it may import.
MAY_IMPORT = {"components": {"components"},
              "pipeline": {"components", "pipeline"},
              "reports": {"components", "pipeline", "reports"},
              "commands": {"components", "pipeline", "reports", "commands"},
              "kubeflow": {"components", "pipeline", "kubeflow"}}
OLD_NAMES = set(MAY_IMPORT)


def imported_modules(path):
    """Every module an `import` or `from … import` in the file names, with its line."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def python_files(*folders):
    for folder in folders:
        for dirpath, _, files in os.walk(os.path.join(REPO, folder)):
            yield from (os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".py"))


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_imports_flow_one_way(folder):
    against = []
    for path in python_files(folder):
        for module, line in imported_modules(path):
            parts = module.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and parts[1] not in MAY_IMPORT[folder]:
                against.append(f"{os.path.relpath(path, REPO)}:{line} imports {module}")
    assert not against, "imports against the layers:\n" + "\n".join(against)


def test_nothing_imports_the_folders_by_their_bare_names():
    """Installed, they exist only as tfx_finetune.<folder> (setup.py)."""
    bare = [f"{os.path.relpath(path, REPO)}:{line} imports {module}"
            for path in python_files(*MAY_IMPORT, "tests", "bench")
            for module, line in imported_modules(path) if module.split(".")[0] in OLD_NAMES]
    assert not bare, "\n".join(bare)


def test_the_check_sees_a_backward_import(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from tfx_finetune.kubeflow import compile\n")
    assert list(imported_modules(str(source))) == [("tfx_finetune.kubeflow", 2)]
