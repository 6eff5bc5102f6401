"""The package's layers and import rules (docs/architecture.md), checked on the source.

Every import of a musictag module counts, at the top of a file or inside a function: a lazy
import still ties the two modules together. Imports under ``if TYPE_CHECKING:`` do not (they never
run; they name types for annotations).
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "musictag"

# Lowest first. A module imports from its own group and from the layers below it, never from
# a layer above it nor from a sibling group of its own layer ("tagger" and "data" know nothing
# of each other). A group entry names a module or a package (with everything in it).
LAYERS: tuple[dict[str, tuple[str, ...]], ...] = (
    {
        "base": (
            "musictag",  # the package itself: __version__ and lazy public names only
            "musictag.audio",
            "musictag.audio_reader",  # the decoder that notices damaged audio (issue 12)
            "musictag.tta",
            "musictag.results",
            "musictag.metrics",
            "musictag.losses",
            "musictag.calibration",
            "musictag.lightning_compat",  # (branch issue-13a) Lightning's private APIs
            "musictag.autotune",  # (branch issue-14b) inference settings per machine
            "musictag.prefetch",  # (issue 14) decoding ahead on threads
            "musictag.precision",  # (branch issue-14) bf16-mixed training where it is native
        )
    },
    {
        "models": (
            "musictag.models",
            "musictag.frontend",
            "musictag.optimize",  # (branches issue-14a/b) fused inference copies of models
        )
    },
    {
        "tagger": (
            "musictag.tagger",
            "musictag.presets",
            "musictag.checkpoints",
            "musictag.pretrained",
            "musictag.finetune",
            "musictag.zoo",  # (branch issue-13a) create_model, pretrained weights
        ),
        "data": ("musictag.data",),
    },
    {"engine": ("musictag.inference", "musictag.inputs")},
    {
        "tasks": (
            "musictag.search",
            "musictag.plots",
            "musictag.evaluation",
            "musictag.calibrate",
            "musictag.analysis",
            "musictag.catalogue",
            "musictag.export",
            "musictag.callbacks",
            "musictag.training",
            "musictag.demo",
            "musictag.zoo_table",
        )
    },
    {
        "commands": (
            "musictag.cli",  # the `musictag` command
            "musictag.lightning_cli",
            "musictag.serve",
            "musictag.doctor",
            "musictag.__main__",
        )
    },
)

# Imports that a rule names on purpose: (importer, imported) -> why.
FORBIDDEN = {
    ("musictag.inference", "musictag.data.sources"): (
        "the audio extensions and decoding live in musictag.audio, not in a preparer"
    ),
}

# Third-party packages that decode or resample audio, and the only modules that import them:
# audio files are decoded in musictag.audio (and its audio_reader), for the data module,
# inference and the commands.
AUDIO_LIBRARIES = {"soundfile", "soxr"}
AUDIO_LIBRARY_USERS = {
    "musictag.audio": "decodes and resamples every audio file",
    "musictag.audio_reader": "the decoder behind musictag.audio, which notices damaged files",
    "musictag.data.shards": "the shard format's FLAC codec (bytes in memory, not files)",  # package too
    "musictag.data.integrity": "catches soundfile's error type when checking shards",
    "musictag.data.sources.synth": "writes the synthetic collection's WAV files",
    "musictag.serve.app": "reads an upload's header to refuse what is not audio",
    "musictag.doctor": "checks that the native libraries work",
}

# Imports allowed against the rules for a while, each with the reason and the issue that removes
# it (test_temporary_exceptions_are_still_needed says when one can go). None today.
TEMPORARY: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported}"


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in the tree, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in _runtime_imports(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _runtime_imports(node)


@functools.cache
def imports_of(name: str) -> tuple[tuple[str, int, bool], ...]:
    """``(imported module, line, is_package_module)`` of every runtime import in ``name``;
    ``is_package_module`` is False for third-party and standard-library modules."""
    return tuple(_imports_of(name))


def _imports_of(name: str) -> Iterator[tuple[str, int, bool]]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, alias.name.split(".")[0] == "musictag"
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "musictag":
            yield target, node.lineno, False
            continue
        for alias in node.names:  # `from musictag import presets` imports a module
            sub = f"{target}.{alias.name}"
            yield (sub if sub in MODULES else target), node.lineno, True


def package_imports() -> list[Import]:
    out = []
    for name, path in MODULES.items():
        for imported, line, ours in imports_of(name):
            if ours and imported != name:
                out.append(Import(name, imported, f"{path.relative_to(ROOT)}:{line}"))
    return out


def _within(name: str, entry: str) -> bool:
    return name == entry or (entry != "musictag" and name.startswith(entry + "."))


def group_of(name: str) -> tuple[int, str] | None:
    """``(layer index, group)`` of a module: its most specific entry in LAYERS."""
    best = None
    for level, groups in enumerate(LAYERS):
        for group, entries in groups.items():
            for entry in entries:
                if _within(name, entry) and (best is None or len(entry) > len(best[0])):
                    best = (entry, level, group)
    return None if best is None else best[1:]


def rule_broken(imp: Import) -> str | None:
    """Which rule ``imp`` breaks, or None."""
    if (imp.importer, imp.imported) in TEMPORARY:
        return None
    for (importer, imported), reason in FORBIDDEN.items():
        if _within(imp.importer, importer) and _within(imp.imported, imported):
            return reason
    if imp.importer.startswith("musictag.models.") and not _within(imp.imported, "musictag.models"):
        return "musictag.models is pure torch: it imports only its own modules"
    (lo, group_from), (li, group_to) = group_of(imp.importer), group_of(imp.imported)
    if li > lo:
        return f"layer {group_from!r} may not import {group_to!r}, which is above it"
    if li == lo and group_to != group_from:
        return f"{group_from!r} and {group_to!r} are independent layers"
    return None


def test_every_module_has_a_layer():
    unplaced = [name for name in MODULES if group_of(name) is None]
    assert not unplaced, f"add to LAYERS in tests/test_architecture.py: {unplaced}"


def test_imports_follow_the_layers():
    broken = [f"{imp} ({why})" for imp in package_imports() if (why := rule_broken(imp))]
    assert not broken, "imports against docs/architecture.md:\n" + "\n".join(broken)


def test_temporary_exceptions_are_still_needed():
    found = {(imp.importer, imp.imported) for imp in package_imports()}
    assert not TEMPORARY - found, f"remove from TEMPORARY: {sorted(TEMPORARY - found)}"


def test_no_import_cycle():
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    where: dict[tuple[str, str], str] = {}
    for imp in package_imports():
        if (imp.importer, imp.imported) not in TEMPORARY and imp.imported in graph:
            graph[imp.importer].add(imp.imported)
            where.setdefault((imp.importer, imp.imported), imp.where)
    cycles = [shortest_cycle(graph, c) for c in strongly_connected(graph) if len(c) > 1]
    described = [
        " -> ".join(cycle) + "  (" + ", ".join(where[e] for e in zip(cycle, cycle[1:])) + ")"
        for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(described)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected ``component``."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    for v in queue:  # breadth first
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle in {component}")


def test_models_and_audio_libraries():
    stdlib = set(sys.stdlib_module_names)
    broken = []
    for name, path in MODULES.items():
        for imported, line, ours in imports_of(name):
            top = imported.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: {name} imports {imported}"
            if ours or top in stdlib or top == "__future__":
                continue
            if name.startswith("musictag.models") and top not in {"torch", "numpy"}:
                broken.append(f"{where} (musictag.models is pure torch)")
            if top in AUDIO_LIBRARIES and not any(_within(name, u) for u in AUDIO_LIBRARY_USERS):
                broken.append(f"{where} (decode audio with musictag.audio)")
    assert not broken, "\n".join(broken)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize(
    "importer,imported,rule",
    [
        ("musictag.tagger", "musictag.inference", "above it"),
        ("musictag.data.datamodule", "musictag.tagger", "independent"),
        ("musictag.inference", "musictag.data.sources.folder", "preparer"),
        ("musictag.models.fcn", "musictag.tta", "pure torch"),
    ],
)
def test_the_rules_catch_a_backward_import(importer, imported, rule):
    assert rule in (rule_broken(Import(importer, imported, "x.py:1")) or "")
    assert rule_broken(Import(imported, "musictag.audio", "x.py:1")) is None


def test_lazy_imports_count_and_type_only_imports_do_not(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .tagger import Tagger\n"
        "def f():\n    from .inference import Inference\n"
    )
    found = [n.module for n in _runtime_imports(ast.parse(source))]
    assert found == ["typing", "inference"]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "b"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["d"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
