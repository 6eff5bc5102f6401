"""Lines of ``musictag/`` then and now, split by feature (issue 13's "fewer lines" accounting).

    python benchmarks/line_count.py                # the table of docs/architecture.md#size
    python benchmarks/line_count.py --rev c401046  # one figure: the issue's 14,977
    python benchmarks/line_count.py --by-commit musictag/audio.py  # what its new lines came with

A line is what ``find musictag -name '*.py' | xargs cat | wc -l`` counts (newline characters of
the tracked ``.py`` files). Lines belong to a feature added since ``BASE`` when their module is
one of that feature's (``NEW_MODULES``: modules written for it, with ``git log`` showing that
their code came after ``BASE``), or, in ``musictag/cli.py``, when they are that command's handler
or sub-parser (``NEW_IN_CLI``); every other line belongs to the features that existed at
``BASE``, and so do the top-level definitions of new-feature modules named in ``OLD_IN_NEW``
(an old feature's code that a new module holds so that imports do not go in a circle). For those, ``git blame -M -C -C`` also says how many lines are as
they were at ``BASE`` (moved or not) and, per module, how many were written since (a clean
working tree only: blame reads commits; for ``cli.py``, of the lines left after the new
commands' parts).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import Counter
from pathlib import Path

BASE = "c401046"  # the last commit before the first session-2 change: issue 13's 14,977 lines
REPO = Path(__file__).resolve().parents[1]

NEW_MODULES = {
    "train / evaluate (issue 11)": (
        "musictag/training/",
        "musictag/evaluation.py",
        "musictag/models/compact.py",
        "musictag/models/transfer.py",
    ),
    "checksums, verify (issue 12)": (
        "musictag/data/integrity.py",
        "musictag/data/shards/checksums.py",
        "musictag/data/skipped.py",
        "musictag/audio_reader.py",
    ),
    "speed: decode ahead, autotune, optimize, bf16 (issue 14)": (
        "musictag/autotune.py",
        "musictag/optimize.py",
        "musictag/prefetch.py",
        "musictag/precision.py",
    ),
    "calibrate (issue 15a)": ("musictag/calibrate.py", "musictag/calibration.py"),
    "export (issue 15a)": ("musictag/export.py",),
    "serve (issue 15b)": ("musictag/serve/",),
    "catalogue runs, --db (issue 15c)": ("musictag/catalogue.py",),
    "doctor, install checks": ("musictag/doctor.py",),
}
# old features' top-level definitions inside the modules above: they count for the old features
OLD_IN_NEW = {"musictag/audio_reader.py": ("AudioReadError",)}
# top-level functions and sub-parsers of musictag/cli.py that serve the features above
NEW_IN_CLI = {
    "train / evaluate (issue 11)": ("_cmd_train", "_cmd_evaluate", "evaluate", "train"),
    "checksums, verify (issue 12)": ("_cmd_verify", "verify"),
    "speed: decode ahead, autotune, optimize, bf16 (issue 14)": ("_add_speed",),
    "calibrate (issue 15a)": ("_cmd_calibrate", "_thresholds", "_threshold_arg", "calibrate"),
    "export (issue 15a)": ("_cmd_export", "export"),
    "serve (issue 15b)": ("_cmd_serve", "serve"),
    "catalogue runs, --db (issue 15c)": (
        "_lightning_devices",
        "_run_catalogue",
        "_catalogue_embed",
        "_add_catalogue",
    ),
    "doctor, install checks": ("_cmd_doctor", "doctor"),
}


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def python_files(rev: str | None) -> dict[str, str]:
    """Path -> text of the tracked ``musictag/**.py`` at ``rev`` (None: the working tree)."""
    if rev is None:
        names = git("ls-files", "musictag").split()
        return {n: (REPO / n).read_text(encoding="utf-8") for n in names if n.endswith(".py")}
    names = git("ls-tree", "-r", "--name-only", rev, "musictag").split()
    return {n: git("show", f"{rev}:{n}") for n in names if n.endswith(".py")}


def lines(text: str) -> int:
    return text.count("\n")


def cli_parts(text: str) -> Counter[str]:
    """Lines of a module per top-level function and class, and of ``cli.py``'s ``build_parser``
    per sub-command."""
    parts: Counter[str] = Counter()
    for node in ast.parse(text).body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        if node.name != "build_parser":
            parts[node.name] += node.end_lineno - start + 1
            continue
        command = None  # statements after `x = sub.add_parser("name", ...)` belong to "name"
        for stmt in node.body:
            call = stmt.value if isinstance(stmt, (ast.Assign, ast.Expr)) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                if call.func.attr == "add_parser" and isinstance(call.args[0], ast.Constant):
                    command = call.args[0].value
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "training.cli":
                command = "train"
            if isinstance(stmt, ast.Return):
                command = None
            parts[command or "build_parser"] += stmt.end_lineno - stmt.lineno + 1
    return parts


def feature_of(path: str) -> str | None:
    for feature, prefixes in NEW_MODULES.items():
        if path.startswith(prefixes):
            return feature
    return None


def blamed_old_lines(path: str) -> int:
    """Lines of ``path`` that ``git blame -M -C -C`` traces to ``BASE`` or before."""
    out = git("blame", "-w", "-M", "-C", "-C", "--line-porcelain", f"{BASE}..HEAD", "--", path)
    return sum(1 for line in out.splitlines() if line == "boundary")


def written_since_by_commit(path: str) -> Counter[str]:
    """Lines of ``path`` written since ``BASE``, per commit (``sha subject``)."""
    out = git("blame", "-w", "-M", "-C", "-C", "--line-porcelain", f"{BASE}..HEAD", "--", path)
    commit, subjects, boundary, counts = "", {}, set(), Counter()
    for line in out.splitlines():
        head = line.split(" ")
        if len(head) >= 3 and len(head[0]) == 40 and head[1].isdigit():
            commit = head[0]
            counts[commit] += 1
        elif line.startswith("summary "):
            subjects[commit] = line[8:]
        elif line == "boundary":
            boundary.add(commit)
    return Counter(
        {f"{c[:7]} {subjects[c][:90]}": n for c, n in counts.items() if c not in boundary}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="print only the total at this revision")
    parser.add_argument(
        "--min-since", type=int, default=100, help="list modules with this many new lines"
    )
    parser.add_argument("--by-commit", metavar="MODULE", help="a module's new lines per commit")
    args = parser.parse_args()
    if args.by_commit:
        for commit, n in written_since_by_commit(args.by_commit).most_common():
            print(f"{n:5d}  {commit}")
        return
    if args.rev:
        print(sum(lines(t) for t in python_files(args.rev).values()))
        return
    then = sum(lines(t) for t in python_files(BASE).values())
    now = python_files(None)
    new: Counter[str] = Counter()
    old_modules: list[str] = []
    for path, text in now.items():
        feature = feature_of(path)
        if feature:
            parts = cli_parts(text) if path in OLD_IN_NEW else Counter()
            new[feature] += lines(text) - sum(parts[n] for n in OLD_IN_NEW.get(path, ()))
        else:
            old_modules.append(path)
    cli = cli_parts(now["musictag/cli.py"])
    new_in_cli = 0
    for feature, names in NEW_IN_CLI.items():
        new[feature] += sum(cli[n] for n in names)
        new_in_cli += sum(cli[n] for n in names)
    own = {p: lines(now[p]) - (new_in_cli if p == "musictag/cli.py" else 0) for p in old_modules}
    total = sum(lines(t) for t in now.values())
    existing = total - sum(new.values())
    dirty = bool(git("status", "--porcelain", "musictag"))
    kept = {p: blamed_old_lines(p) for p in old_modules} if not dirty else {}
    unchanged = sum(kept.values()) if kept else None
    print(f"| musictag/ at {BASE} (issue 13's figure) | {then:,} |")
    print("|---|---:|")
    print(f"| musictag/ now | {total:,} |")
    print(f"| the features that existed at {BASE}, now | {existing:,} |")
    if unchanged is not None:
        print(f"| of which lines as they were at {BASE} (git blame -M -C -C) | {unchanged:,} |")
    for feature, n in sorted(new.items(), key=lambda kv: -kv[1]):
        print(f"| added since: {feature} | {n:,} |")
    print(f"| added since, all | {sum(new.values()):,} |")
    if kept:
        print(f"\n| module of the features of {BASE} | their lines | written since |")
        print("|---|---:|---:|")
        since = {p: max(0, own[p] - kept[p]) for p in old_modules}
        for p in sorted(since, key=lambda p: -since[p]):
            if since[p] >= args.min_since:
                print(f"| {p} | {own[p]:,} | {since[p]:,} |")


if __name__ == "__main__":
    main()
