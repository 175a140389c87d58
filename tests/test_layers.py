"""The layers of edgetl point one way (docs/architecture.md): an import only ever points
down, and no modules import each other in a circle.

Every import counts, wherever it stands (a function's lazy import too), and so does a
string that names an edgetl module (what `importlib.import_module` or a table of modules
loads)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgetl"

# From the ground up; a module may import its own layer and those below it. Modules of
# the same layer in different packages must not import each other in a circle.
LAYERS = [
    ("edgetl._version", "edgetl.core"),  # errors, settings, progress, paths, threads, metrics, caches, card, outputs
    ("edgetl.modality", "edgetl.task"),
    ("edgetl.runtime",),  # torch-free: what a device installs
    ("edgetl.data",),
    ("edgetl.backbones",),
    ("edgetl.finetune", "edgetl.evaluate", "edgetl.export", "edgetl.bench", "edgetl.quantize", "edgetl.deploy",
     "edgetl.importer"),
    ("edgetl.pipeline",),
    ("edgetl.cli", "edgetl", "edgetl.__main__"),
]
# What the issue of the layers named outright: the lower layers never reach training,
# export, quantization, benchmarking, evaluation or the CLI.
LOWER = ("edgetl.runtime", "edgetl.modality", "edgetl.task", "edgetl.data", "edgetl.core")
UPPER = ("edgetl.finetune", "edgetl.export", "edgetl.quantize", "edgetl.bench", "edgetl.evaluate", "edgetl.deploy",
         "edgetl.importer", "edgetl.pipeline", "edgetl.cli")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The module `name` refers to: itself, or the module that defines it (a.b.NAME -> a.b)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The edgetl modules `name` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule; `from mod import NAME`, the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.partition(":")[0]  # "module:attr" as entry points and tables write it
            if text.startswith("edgetl.") and text in known:
                targets = [text]
        for t in targets:
            if t == "edgetl" or t.startswith("edgetl."):
                resolved = _resolve(t, known)
                if resolved and resolved != name:
                    found.add(resolved)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def layer_of(name: str) -> int:
    """The layer of the longest prefix that the table names."""
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    if layer is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS and to docs/architecture.md")
    return layer


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in g.items() for b in targets
                  if layer_of(b) > layer_of(a) or (_in(a, LOWER) and _in(b, UPPER)))


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_in_a_layer_and_every_import_points_down():
    g = graph()
    assert len(g) > 50 and sum(map(len, g.values())) > 100  # the walk really read the package
    assert upward_imports(g) == []


def test_no_modules_import_each_other_in_a_circle():
    assert circles(graph()) == []


def test_the_runtime_imports_no_training_side_module():
    g = graph()
    runtime = [m for m in g if _in(m, ("edgetl.runtime",))]
    assert len(runtime) > 5
    reached = {b for m in runtime for b in g[m]}
    allowed = ("edgetl.runtime", "edgetl.modality", "edgetl.task", "edgetl.core", "edgetl._version")
    assert reached and all(_in(b, allowed) for b in reached), reached


@pytest.mark.parametrize("planted", [
    "from edgetl.finetune.run import load_run\n",  # at module level
    "def f():\n    from edgetl.evaluate.accuracy import evaluate\n",  # lazy
    "import importlib\nX = importlib.import_module('edgetl.quantize.qat')\n",  # by name
])
def test_a_planted_upward_import_is_caught(tmp_path, planted):
    import shutil

    copy = tmp_path / "edgetl"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "modality" / "audio.py"
    target.write_text(target.read_text() + "\n" + planted)
    found = upward_imports(graph(copy))
    assert [f for f in found if f.startswith("edgetl.modality.audio -> ")], found


def test_a_planted_circle_is_caught(tmp_path):
    import shutil

    copy = tmp_path / "edgetl"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "data" / "folders.py").write_text((copy / "data" / "folders.py").read_text()
                                              + "\nfrom edgetl.data import samples\n")
    assert any({"edgetl.data.folders", "edgetl.data.samples"} <= set(c) for c in circles(graph(copy)))


# Stage packages: each holds its settings in settings.py, read without loading the stage.
STAGES = ("data", "finetune", "evaluate", "export", "quantize", "bench", "deploy", "importer", "runtime")


def test_the_package_root_holds_the_facade_alone_and_every_stage_has_its_settings():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py", "__main__.py", "_version.py"]
    for stage in STAGES:
        assert (ROOT / stage / "settings.py").is_file(), stage


def test_the_cli_loads_settings_not_stages():
    """`import edgetl.cli` (every command's options) loads the settings modules, the CLI,
    the low package, the backend table with the artifact kinds it names, and what the
    settings are made of (the modalities' training options, the strategy names, the CPU
    kinds INT8 is made for): no stage, no backend."""
    import subprocess
    import sys

    code = "import sys, edgetl.cli; print('\\n'.join(m for m in sys.modules if m.startswith('edgetl')))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    made_of = {"edgetl.modality.registry", "edgetl.modality.image", "edgetl.modality.audio",
               "edgetl.finetune.strategies", "edgetl.quantize.cpu", "edgetl.runtime.machine",
               "edgetl.runtime.backend_table", "edgetl.runtime.artifacts", "edgetl.runtime.bundle"}
    packages = {f"edgetl.{stage}" for stage in STAGES} | {"edgetl.core", "edgetl.modality"}
    allowed = {m for m in loaded if m.startswith(("edgetl.core.", "edgetl.cli")) or m.endswith(".settings")}
    allowed |= made_of | packages | {"edgetl", "edgetl._version"}
    assert loaded - allowed == set()
    assert {f"edgetl.{stage}.settings" for stage in STAGES} - {"edgetl.runtime.settings"} <= loaded  # the walk saw them
    assert not {"edgetl.export.job", "edgetl.quantize.job", "edgetl.runtime.backends"} & loaded
