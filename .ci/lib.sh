# Shared by the .ci scripts: fresh virtual environments and the lock.
# shellcheck shell=bash

LOCK=requirements/lock.txt

# make_venv DIR PIP_INSTALL_ARGS...: a fresh venv at DIR with those packages, then activate it
make_venv() {
  local dir=$1
  shift
  rm -rf "$dir"
  python3 -m venv "$dir"
  # shellcheck disable=SC1091
  . "$dir/bin/activate"
  python -m pip install -q --upgrade pip
  python -m pip install -q "$@"
}

# freeze_to FILE: the active venv's third-party packages as pins (musictag itself left out)
freeze_to() {
  {
    echo "# musictag's tested set: constraints for 'pip install -c $LOCK -e \".[dev]\"'."
    echo "# Made by .ci/lock on $(date -u +%Y-%m-%d) with Python $(python -c 'import platform; print(platform.python_version())') on $(uname -m) Linux; refresh: bash .ci/lock"
    python -m pip freeze --exclude-editable | grep -v -i '^musictag'
  } >"$1"
}

# differs_from_lock: the packages of the active venv whose version is not the locked one
differs_from_lock() {
  python - "$LOCK" <<'PY'
import sys
from importlib.metadata import distributions

lock = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, version = line.split("==", 1)
        lock[name.strip().lower().replace("_", "-")] = version.strip()
changed = []
for dist in distributions():
    name = dist.metadata["Name"].lower().replace("_", "-")
    if name in lock and lock[name] != dist.version:
        changed.append(f"{name} {lock[name]} -> {dist.version}")
    elif name not in lock and name not in ("musictag", "pip", "setuptools", "wheel"):
        changed.append(f"{name} (not in the lock) {dist.version}")
print("\n".join(sorted(changed)) if changed else "none")
PY
}
