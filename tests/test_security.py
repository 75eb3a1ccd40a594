"""Loading files never executes code: a static scan of every climgen source file.

Checked on the syntax tree (so ``module.eval()`` and words in docstrings do not count):

- every ``torch.load(...)`` passes ``weights_only=True``; no ``torch.jit.load``;
- YAML is read with ``yaml.safe_load`` only (no ``yaml.load``/``full_load``/``unsafe_load``,
  no ``yaml.Loader``/``UnsafeLoader``);
- no built-in ``eval``, ``exec``, ``compile`` or ``__import__``;
- no import of ``pickle``, ``cPickle``, ``dill``, ``cloudpickle``, ``marshal``, ``shelve`` or
  ``joblib``; no ``numpy.load(..., allow_pickle=True)``;
- no ``subprocess`` call with ``shell=True``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "climgen"
SOURCES = sorted(PACKAGE.rglob("*.py"))

UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
UNSAFE_YAML_LOADERS = {"Loader", "FullLoader", "UnsafeLoader"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(
        kw.arg == name and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in call.keywords
    )


def problems_in(source: str) -> list[str]:
    """Unsafe constructs in ``source``, as 'line N: what' strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"line {line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"line {line}: from {node.module} import ...")
            if node.module == "yaml":
                for alias in node.names:
                    if alias.name in UNSAFE_YAML | UNSAFE_YAML_LOADERS:
                        found.append(f"line {line}: from yaml import {alias.name}")
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name in {f"yaml.{a}" for a in UNSAFE_YAML_LOADERS}:
                found.append(f"line {line}: {name}")
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        if isinstance(node.func, ast.Name) and node.func.id in UNSAFE_BUILTINS:
            found.append(f"line {line}: {node.func.id}()")
        elif func == "torch.load" and not _keyword_is_true(node, "weights_only"):
            found.append(f"line {line}: torch.load without weights_only=True")
        elif func == "torch.jit.load":
            found.append(f"line {line}: torch.jit.load")
        elif func in {f"yaml.{a}" for a in UNSAFE_YAML}:
            found.append(f"line {line}: {func}()")
        elif func in {"np.load", "numpy.load"} and _keyword_is_true(node, "allow_pickle"):
            found.append(f"line {line}: {func}(allow_pickle=True)")
        elif func.startswith("subprocess.") and _keyword_is_true(node, "shell"):
            found.append(f"line {line}: {func}(shell=True)")
    return found


def test_the_scan_sees_the_sources():
    assert len(SOURCES) > 20 and PACKAGE / "train" / "checkpoint.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_no_code_executing_loaders(path):
    assert problems_in(path.read_text()) == [], path


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from dill import loads",
        "torch.load(f)",
        "torch.load(f, weights_only=False)",
        "torch.jit.load(f)",
        "yaml.load(text)",
        "yaml.load(text, Loader=yaml.FullLoader)",
        "from yaml import unsafe_load",
        "eval('1 + 1')",
        "exec(code)",
        "np.load(f, allow_pickle=True)",
        "subprocess.run(cmd, shell=True)",
    ],
)
def test_the_scan_catches_each_unsafe_construct(snippet):
    assert problems_in(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "torch.load(f, map_location='cpu', weights_only=True)",
        "yaml.safe_load(text)",
        "model.eval()",
        "np.load(f)",
        "'''docs mention pickle and eval()'''",
    ],
)
def test_the_scan_accepts_safe_code(snippet):
    assert problems_in(snippet) == []
