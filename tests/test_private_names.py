"""Third-party private names are used in one module only: tune_mnist/ray_internals.py.

A Ray or TensorBoard release may rename or drop a private name without notice. Where one is used
at all, it sits in the one module that says why no public way exists and fails loudly when the
name is gone; everywhere else the package uses only public APIs. The walk below finds, outside
that module: an attribute with one leading underscore read on anything but `self`/`cls` (the
project's own and an imported tune_mnist module's), a `self._x` or `super()._x` whose `_x` the
package never defines (an inherited private attribute, such as JsonLoggerCallback's
`_trial_configs`), the same names as a `getattr`/`hasattr`/`setattr` string constant, an import of
a module path with a `_private`/`_internal` part, a part with one leading underscore, or
`tensorboard.compat`, and the internal names of INTERNAL_NAMES (public-looking attributes of
Tune's trial bookkeeping).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tune_mnist"
ALLOWED = PACKAGE / "ray_internals.py"
OWN = ("self", "cls")
PRIVATE_MODULES = ("tensorboard.compat",)
# Attributes without an underscore that are still Tune's internal bookkeeping, not its API.
INTERNAL_NAMES = {"metric_n_steps", "run_metadata"}
# Names of the standard library (not a third party's) that start with an underscore:
# argparse.HelpFormatter._get_help_string, which the package overrides, unchanged since Python 3.2;
# os._exit, documented public API (the trial watchdog ends a hung process with it).
STANDARD_LIBRARY = {"_get_help_string", "_exit"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_module(path: str) -> bool:
    parts = path.split(".")
    return any(_private(part) for part in parts) or any(
        path == m or path.startswith(m + ".") for m in PRIVATE_MODULES
    )


def own_names(sources: list[str]) -> set[str]:
    """Names the package itself defines: functions, classes, module names, `self.x = ...`."""
    names = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def private_uses(source: str, own: set[str] = frozenset()) -> list[tuple[int, str]]:
    """(line, what) for each use of a third-party private name in a module's source; ``own``:
    the names the package defines (`own_names`).

    >>> private_uses("import ray._private.utils\\nself._x = tuner._local_tuner")
    [(1, 'import ray._private.utils'), (2, 'tuner._local_tuner')]
    >>> private_uses("getattr(c, '_started_actors')\\nfrom tensorboard.compat.proto import x")
    [(1, "getattr(..., '_started_actors')"), (2, 'from tensorboard.compat.proto import')]
    >>> private_uses("from ray.tune import _x\\nsuper()._y\\nx.__name__\\nt.run_metadata")
    [(1, 'from ray.tune import _x'), (2, 'super()._y'), (4, 't.run_metadata')]
    >>> private_uses("self._trial_configs.pop(t)\\nself._mine", own={"_mine"})
    [(1, 'self._trial_configs')]
    >>> private_uses("from tune_mnist import comparison as c\\nc._pairs()")
    []
    """
    found = []
    tree = ast.parse(source)
    own_modules = set()  # names bound to the package's own modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tune_mnist":
            own_modules |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            own_modules |= {a.asname for a in node.names if a.name.startswith("tune_mnist.")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {a.name}") for a in node.names if _private_module(a.name)
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "tune_mnist":
                continue  # the project's own modules, private helpers included
            if _private_module(node.module):
                found.append((node.lineno, f"from {node.module} import"))
            found += [
                (node.lineno, f"from {node.module} import {a.name}")
                for a in node.names
                if _private(a.name)
            ]
        elif isinstance(node, ast.Attribute) and node.attr in INTERNAL_NAMES:
            found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in STANDARD_LIBRARY:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in own_modules:
                continue
            if isinstance(owner, ast.Name) and owner.id in OWN:
                if node.attr in own or isinstance(node.ctx, ast.Store):
                    continue  # defined by the package (here, or where it is assigned)
            found.append((node.lineno, f"{ast.unparse(owner)}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and (_private(node.args[1].value) or node.args[1].value in INTERNAL_NAMES)
        ):
            found.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
    return sorted(found)


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != ALLOWED)


OWN_NAMES = own_names([p.read_text() for p in package_modules()])


@pytest.mark.parametrize("module", package_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_of_another_package_outside_ray_internals(module):
    uses = private_uses(module.read_text(), OWN_NAMES)
    assert not uses, f"{module.name}: " + "; ".join(f"line {n}: {what}" for n, what in uses)


def test_the_walk_sees_the_package_and_the_allowed_module_exists():
    """The scan must be able to fail: it reads real modules, and the one allowed module is there."""
    assert len(package_modules()) > 20
    assert ALLOWED.is_file()
    assert private_uses(ALLOWED.read_text()), "ray_internals.py holds the private uses"
