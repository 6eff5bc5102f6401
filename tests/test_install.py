"""What an install needs: native extensions load, imports are declared, the lock fits the ranges."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from musictag.doctor import Check, check_environment, format_checks

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK = ROOT / "requirements" / "lock.txt"

# Declared, but used through another package rather than imported: why, for each.
INDIRECT = {
    "wandb": "the recipes' default logger, through pytorch_lightning.loggers.WandbLogger",
    "tensorboardX": "TensorBoardLogger in the logger tests, through pytorch_lightning",
    "ruff": "the linter (a command, never imported)",
}
# Extras requested on a dependency: why, for each.
DEPENDENCY_EXTRAS = {"jsonargparse": {"signatures"}}  # LightningCLI needs the signatures extra


def _requirements(group: str) -> list[Requirement]:
    reqs = PROJECT["dependencies"] if group == "core" else PROJECT["optional-dependencies"][group]
    return [Requirement(r) for r in reqs]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_local(module: str) -> bool:
    """The repository's own modules: packages at its root, scripts beside the tests/benchmarks."""
    # only the repository's own folders: a virtual environment may live inside the checkout
    own = ("benchmarks", "tests", "recipes")
    return (ROOT / module).is_dir() or any(
        any((ROOT / folder).rglob(f"{module}.py")) for folder in own
    )


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported by the .py files under ``folder`` -> files importing them."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and not _is_local(top):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _distributions_of(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    by_module = packages_distributions()
    out: dict[str, set[str]] = {}
    for module, files in modules.items():
        # an optional feature's package may not be installed: then its module name is its name
        dist = by_module[module][0] if module in by_module else module
        out.setdefault(_norm(dist), set()).update(files)
    return out


def test_every_native_extension_loads_and_works():
    checks = check_environment()
    assert {c.package for c in checks} >= {"torch", "soundfile", "soxr", "nnAudio", "librosa"}
    failed = [c for c in checks if not c.ok]
    assert not failed, "\n" + format_checks(checks)
    soundfile = next(c for c in checks if c.package == "soundfile")
    assert all(f in soundfile.detail for f in ("FLAC", "VORBIS", "OPUS", "MP3"))


def test_a_failing_check_names_package_version_and_torch():
    line = Check("torchaudio", "2.11.1", False, False, "OSError: undefined symbol").message("2.11.0")
    assert line == "FAIL  torchaudio 2.11.1 (with torch 2.11.0): OSError: undefined symbol"
    report = format_checks([Check("soxr", "1.0", True, False, "boom")])
    assert report.endswith("1 failed: soxr")


def test_everything_the_package_imports_is_a_core_dependency():
    core = {_norm(r.name) for r in _requirements("core")}
    optional = {_norm(r.name) for g in PROJECT["optional-dependencies"] for r in _requirements(g)}
    imported = _distributions_of(_third_party_imports(ROOT / "musictag"))
    # optional features import their package lazily and say which extra installs it
    undeclared = {d: f for d, f in imported.items() if d not in core | optional}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_core_dependency_is_used():
    imported = set(_distributions_of(_third_party_imports(ROOT / "musictag")))
    imported |= set(_distributions_of(_third_party_imports(ROOT / "recipes")))
    unused = {
        r.name
        for r in _requirements("core")
        if _norm(r.name) not in imported and r.name not in INDIRECT
    }
    assert not unused, f"core dependencies musictag never imports: {sorted(unused)}"
    for r in _requirements("core"):
        assert r.extras <= DEPENDENCY_EXTRAS.get(r.name, set()), f"unexplained extras on {r}"


def test_everything_the_tests_import_is_installed_by_the_dev_extra():
    declared = {_norm(r.name) for g in ("core", "dev") for r in _requirements(g)}
    imported = _distributions_of(_third_party_imports(ROOT / "tests"))
    undeclared = {d: f for d, f in imported.items() if d not in declared}
    assert not undeclared, f"tests import packages outside core + dev: {undeclared}"
    # the dev extra also installs optional features so that their tests run
    used = set(imported) | set(_distributions_of(_third_party_imports(ROOT / "musictag")))
    dev_unused = {
        r.name for r in _requirements("dev") if _norm(r.name) not in used and r.name not in INDIRECT
    }
    assert not dev_unused, f"dev extra packages the tests never use: {sorted(dev_unused)}"


def _lock() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"{LOCK.name}: {line!r} is not a name==version pin"
            pins[_norm(name)] = Version(pinned)
    return pins


@pytest.mark.parametrize("group", ["core", "dev"])
def test_the_lock_pins_every_dependency_inside_its_declared_range(group):
    pins = _lock()
    for req in _requirements(group):
        assert _norm(req.name) in pins, f"{req.name} is not in {LOCK.name}: run bash .ci/lock"
        assert req.specifier.contains(pins[_norm(req.name)], prereleases=True), (
            f"{LOCK.name} pins {req.name}=={pins[_norm(req.name)]}, outside {req}: run bash .ci/lock"
        )


def test_the_installed_versions_are_inside_the_declared_ranges():
    for req in _requirements("core"):
        try:
            installed = Version(version(req.name))
        except PackageNotFoundError:  # pragma: no cover - the import tests above fail first
            pytest.fail(f"{req.name} is a core dependency but not installed")
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed}: {req}"


def test_every_test_file_the_ci_scripts_name_exists():
    """A renamed test file must not turn a CI stage into "file or directory not found"."""
    named = {
        path
        for script in (ROOT / ".ci").iterdir()
        for path in re.findall(r"\btests/[\w/]+\.py\b", script.read_text())
    }
    assert named, "the CI scripts name no test file: has .ci/newest changed its form?"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"named in .ci/ but not in the repository: {missing}"


def test_the_readme_commands_and_ci_install_the_locked_set():
    readme = (ROOT / "README.md").read_text()
    lock = "pip install -c requirements/lock.txt"
    assert f"{lock} -e . && musictag demo" in readme
    assert f'{lock} -e ".[dev]" && python -m pytest -q' in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'make_venv "${MUSICTAG_CI_VENV:-$WORK/locked}" -c "$LOCK" -e ".[dev]"' in ci
    assert "LOCK=requirements/lock.txt" in (ROOT / ".ci" / "lib.sh").read_text()
    assert "bash .ci/newest" in ci
