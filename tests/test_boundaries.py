"""Boundaries: the library never imports Ray (Ray is orchestration around faice, in tune/ and jobs/), and
no module imports one that imports it back, counting imports inside functions."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAICE = REPO / "faice"
PACKAGES = ("faice", "jobs", "tune")


def module_files(repo: Path = REPO, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages (a package is its __init__)."""
    out = {}
    for pkg in packages:
        for path in (repo / pkg).rglob("*.py"):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (top level or inside functions):
    `from pkg import name` counts the submodule pkg.name when there is one, else pkg itself."""

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, `level - 1` packages up
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    deps.add(sub if sub in files else known(base))
        graph[mod] = deps - {None, mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_cycles_through_function_level_imports(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.sub import b\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (tmp_path / "pkg" / "c.py").write_text("import os\ndef g():\n    import pkg.a\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg import c\n")
    graph = import_graph(module_files(tmp_path, ("pkg",)))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph(module_files()))
    assert not found, f"import cycles (counting imports inside functions): {found}"


def test_jobs_and_tune_do_not_import_each_other_and_faice_imports_neither():
    graph = import_graph(module_files())
    top = {(m.split(".")[0], d.split(".")[0]) for m, deps in graph.items() for d in deps}
    assert ("faice", "jobs") not in top and ("faice", "tune") not in top
    assert not {("jobs", "tune"), ("tune", "jobs")} <= top, "jobs and tune import each other"


def test_no_ray_import_in_library_source():
    offenders = []
    for path in FAICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n == "ray" or n.startswith("ray.")]
    assert not offenders, f"faice/ imports ray: {offenders}"


def test_importing_the_library_and_loading_spaces_does_not_load_ray():
    """In one fresh interpreter (imports are what is tested): search spaces loaded and described, and a
    trial's config built as a search's trial actor builds it (tune.space, which the launcher imports Ray
    beside), load neither Ray nor diffusers (a trial actor never builds a model: ~6 s of imports per trial
    launch); then the library's entry points leave Ray unimported."""
    code = (
        "import sys, tune.space\n"
        "from faice.config import read_tree\n"
        "for name in ('demo-asha.yaml', 'beta-schedule.yaml'):\n"
        "    tune.space.describe_space(tune.space.load_space(name))\n"
        "spec = tune.space.load_space('tests/tune/debug-eval.yaml')\n"
        "spec.trial_config(read_tree(spec.base), [], {'train.lr': 1e-3}, 't0')\n"
        "print('ray' in sys.modules, 'diffusers' in sys.modules)\n"
        "import faice.cli, faice.train.loop, faice.sampling, faice.export, faice.data.prepare\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"], out.stdout


def task_comparisons(source: str) -> list[int]:
    """Line numbers of comparisons with a `.task` attribute (`cfg.task == "x"`, `teacher.task != ...`,
    `cfg.task in (...)`): task dispatch that belongs in faice.tasks."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Attribute) and o.attr == "task" for o in operands):
                lines.append(node.lineno)
    return lines


def test_the_task_comparison_finder_finds_every_form():
    src = 'if cfg.task == "a": pass\nx = t.task != "b"\ny = "c" in (s.cfg.task,)\nz = cfg.task_name == 1\n'
    assert task_comparisons(src) == [1, 2]
    assert task_comparisons('if "x" == state.cfg.task: pass\n') == [1]


def test_only_the_task_registry_compares_task_names():
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for mod, path in module_files().items()
        if not mod.startswith("faice.tasks")
        for line in task_comparisons(path.read_text())
    ]
    assert not offenders, f"task dispatch outside faice/tasks (use task_of(cfg)): {offenders}"
