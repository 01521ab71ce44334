"""Guards of the package layout: mapped top-level folders are namespace-only; sub-packages are all listed."""

import ast
import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_mapped_folders_have_no_init():
    mapped = CONF["tool"]["setuptools"]["package-dir"]
    assert {"rtml.platform", "rtml.datasets", "rtml.models", "rtml.meta", "rtml.tune_spaces"} <= set(mapped)
    for folder in mapped.values():
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow a top-level module"


def test_every_subpackage_is_listed_and_exists():
    listed = set(CONF["tool"]["setuptools"]["packages"])
    mapped = CONF["tool"]["setuptools"]["package-dir"]
    found = set(mapped)
    for pkg, folder in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]))
    assert found == listed, f"not listed: {found - listed}; listed but missing: {listed - found}"


def test_stdlib_and_rtml_modules_resolve():
    import platform

    assert hasattr(platform, "system"), "the stdlib platform module is shadowed"
    for mod in ("rtml.cli.main", "rtml.datasets.trajectory", "rtml.datasets.store.zarr_store"):
        importlib.import_module(mod)


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()


# data -> models -> sweep spaces -> training runtime (platform) -> meta-learning -> command line: one folder each
LAYERS = ("rtml.datasets", "rtml.models", "rtml.tune_spaces", "rtml.platform", "rtml.meta", "rtml.cli")


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for pkg, folder in CONF["tool"]["setuptools"]["package-dir"].items():
        for f in (ROOT / folder).rglob("*.py"):
            out[".".join([pkg, *f.relative_to(ROOT / folder).with_suffix("").parts]).removesuffix(".__init__")] = f
    return out


def _imports(path: Path, modules: dict) -> dict[str, bool]:
    """The rtml modules ``path`` imports (``from rtml.x import y`` counts ``rtml.x.y`` when that is a module),
    each with whether some import of it sits inside a function."""
    tree = ast.parse(path.read_text())
    parents = {ch: node for node in ast.walk(tree) for ch in ast.iter_child_nodes(node)}

    def nested(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    out: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rtml"):
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("rtml")]
        else:
            continue
        for n in names:
            out[n] = out.get(n, False) or nested(node)
    return out


def _layer(module: str) -> int:
    hits = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    assert hits, f"{module} is in no layer: add its folder to LAYERS"
    return hits[0]


def _graph() -> dict[str, dict[str, bool]]:
    modules = _modules()
    return {m: {n: fn for n, fn in _imports(f, modules).items() if n in modules or n in LAYERS}
            for m, f in modules.items()}


def test_no_layer_imports_a_higher_one():
    """Imports — at module level or inside functions — only point down the layers, by folder, with no exception."""
    bad = [f"{m} imports {n} ({LAYERS[_layer(n)]} is above {LAYERS[_layer(m)]})"
           for m, deps in _graph().items() for n in deps if _layer(n) > _layer(m)]
    assert not bad, "\n".join(sorted(bad))


def test_rtml_imports_are_at_module_level():
    """No ``rtml`` import hides inside a function (readers and tools see the whole graph); optional third-party
    dependencies (gpu4pyscf, mamba-ssm, ray, mlflow...) may still be imported where they are used."""
    bad = [f"{m} imports {n} inside a function" for m, deps in _graph().items() for n, fn in deps.items() if fn]
    assert not bad, "\n".join(sorted(bad))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_files_or_packages():
    """No cycle between files; none between packages either, counting a package's import of another one — except a
    sub-package's use of the modules of a folder above it (``engine`` reading ``datasets/errors.py``), which is
    the folder's shared base, not a cycle."""
    graph = _graph()
    files = {m: set(deps) for m, deps in graph.items()}
    assert not _cycles(files), _cycles(files)
    modules = _modules()

    def package(m):
        return m if modules[m].name == "__init__.py" else m.rsplit(".", 1)[0]

    packages: dict[str, set[str]] = {}
    for m, deps in files.items():
        packages.setdefault(package(m), set()).update(
            package(n) for n in deps
            if n in modules and package(n) != package(m) and not package(m).startswith(package(n) + "."))
    assert not _cycles(packages), _cycles(packages)


def test_the_guards_see_what_they_guard():
    """The checks above are not vacuous: the graph has the engine's edges and every folder is a layer."""
    graph = _graph()
    assert "rtml.datasets.engine.system" in graph["rtml.datasets.engine.device"]
    assert "rtml.platform.workers.launch" in graph["rtml.meta.driver"]
    assert _layer("rtml.cli.train") == 5 and _layer("rtml.platform.train.worker") == 3
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_meta_learning_shares_the_worker_runtime_not_the_training_internals():
    """``meta/`` runs on the shared runtime (``platform/workers``); of training it reuses only the objective (its
    task loss is the training loss)."""
    graph = _graph()
    reached = {n for m, deps in graph.items() if m.startswith("rtml.meta.") for n in deps
               if n.startswith("rtml.platform.train")}
    assert reached == {"rtml.platform.train.objective"}, reached
    assert not any(n.startswith("rtml.platform.train") for m, deps in graph.items()
                   if m.startswith("rtml.platform.workers") for n in deps)  # the runtime knows no training detail
