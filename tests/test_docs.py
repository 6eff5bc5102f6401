"""Generated documentation stays in step with the code."""

from __future__ import annotations

import contextlib
import io

from musictag import zoo_table

from .conftest import REPO


def test_models_md_is_generated_from_the_registry():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        zoo_table.main()
    committed = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    assert committed == buf.getvalue(), "docs/models.md is stale: python -m musictag.zoo_table > docs/models.md"
