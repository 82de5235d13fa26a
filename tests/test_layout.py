"""The package reads one way: no import circle, and the analysis side never imports the Ray side."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tune_mnist"
ANALYSIS = {
    *("results", "comparison", "evaluation", "plots", "report"),
    *("tensorboard_events", "mlflow_runs", "dependence"),
}
LOWER = {
    *("files", "storage", "metrics", "checkpoint", "resources", "space", "data", "layers"),
    *("replicates", "estimates", "sequential", "run_lock"),
}
RAY_SIDE = {"run", "tuning", "trainable", "schedulers", "searchers", "rounds", "waits"}


def imports_of(module: Path) -> set[str]:
    """The tune_mnist modules a module imports anywhere in its body (deferred imports too)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tune_mnist"):
            name = node.module.removeprefix("tune_mnist").lstrip(".")
            found |= {name} if name else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tune_mnist.")}
    return found - {module.stem}


def graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def test_the_module_graph_has_no_circle():
    modules = graph()
    assert {"results", "trainable", "files", "metrics", "checkpoint"} <= set(modules)
    try:
        tuple(TopologicalSorter(modules).static_order())
    except CycleError as e:
        raise AssertionError(f"import circle: {' -> '.join(e.args[1])}") from None


def test_analysis_modules_never_import_the_ray_side():
    modules = graph()
    for name in ANALYSIS:
        assert not modules[name] & RAY_SIDE, (name, modules[name] & RAY_SIDE)


def test_lower_modules_import_only_lower_modules():
    modules = graph()
    for name in LOWER:
        assert modules[name] <= LOWER, (name, modules[name] - LOWER)
