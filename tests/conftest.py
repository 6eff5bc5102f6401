"""Shared test fixtures and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI has it); MUSICTAG_SHARED overrides
SHARED = Path(os.environ.get("MUSICTAG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED}; set MUSICTAG_SHARED")
    return SHARED


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


_ARTIFACTS = pytest.StashKey[list]()


@pytest.fixture
def record_artifact(request):
    """``record_artifact(what, path)``: list a file a test wrote in the terminal summary."""

    def record(what: str, path: Path) -> None:
        request.config.stash.setdefault(_ARTIFACTS, []).append((what, Path(path)))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    artifacts = config.stash.get(_ARTIFACTS, [])
    if artifacts:
        terminalreporter.section("files written by tests")
        for what, path in artifacts:
            terminalreporter.write_line(f"{what}: {path}")


@pytest.fixture(autouse=True)
def _tuning_cache(tmp_path_factory, monkeypatch):
    """Inference's measured batch sizes go to a cache of this test session, not the user's."""
    from musictag.autotune import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "musictag-cache"))
