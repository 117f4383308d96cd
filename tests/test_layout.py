"""The package's layout (docs/layout.md): no import circles between modules, moved modules say where they went,
and the public names of the sampling and training packages still import."""

import ast
import pathlib
import subprocess
import sys

import pytest
from conftest import REPO

PACKAGE = pathlib.Path(REPO) / "asm_tf"


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """{module: modules it imports at module level}: `from P import M` points at P.M when that is a module."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                            for alias in node.names}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph):
    """One import circle as a list of modules, or None."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state and (cycle := visit(other)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_imports_without_circles_and_keeps_about_a_dozen_top_level_modules():
    graph = import_graph()
    assert "asm_tf.sampling" in graph["asm_tf.export"] and "asm_tf.sampling.runner" in graph["asm_tf.sampling"]
    assert find_cycle(graph) is None
    top_level = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert len(top_level) <= 12, top_level


@pytest.mark.parametrize("old, new", [("sigmas", "asm_tf.noise_levels.schedule"),
                                      ("levels", "asm_tf.noise_levels.formulas"),
                                      ("ema", "asm_tf.training.ema"), ("point_mass", "asm_tf.evaluation.point_mass")])
def test_a_moved_module_names_its_new_place(old, new):
    for statement in (f"import asm_tf.{old}", f"from asm_tf import {old}"):
        result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"ModuleNotFoundError: asm_tf.{old} has moved: import {new} (docs/layout.md)")


def test_the_public_names_of_sampling_and_training_still_import():
    from asm_tf import sampling, training
    from asm_tf.sampling.settings import SamplerSettings
    from asm_tf.training.trainer import Trainer

    assert sampling.SamplerSettings is SamplerSettings and training.Trainer is Trainer
    assert callable(sampling.make_sampler) and callable(sampling.sample_in_batches)
    with pytest.raises(AttributeError, match="has no attribute 'Trainr'"):
        training.Trainr  # noqa: B018
