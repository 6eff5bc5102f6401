"""Checkpoints and configs written before the registry redesign still load, with the same outputs.

The files in ``tests/data/legacy_checkpoints/`` were written by musictag at commit 034a18f (see
``make_legacy.py`` there): tiny taggers saved with ``save_tagger``, their outputs on a fixed input,
and the state_dict key names of every model registered then (under the names of that time).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from musictag import create_model, list_models, load_tagger

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_checkpoints"
OUTPUTS = json.loads((LEGACY / "outputs.json").read_text())
KEYS = json.loads((LEGACY / "state_dict_keys.json").read_text())


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_legacy_checkpoint_loads_with_the_same_outputs(name):
    model = load_tagger(LEGACY / f"{name}.ckpt")
    x = torch.randn(2, model.crop_samples, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, torch.tensor(OUTPUTS[name]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("old_name", sorted(KEYS))
def test_state_dict_keys_unchanged(old_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old names are aliases now
        with torch.device("meta"):  # key names only: no weights drawn
            model = create_model(old_name, n_tags=3)
    assert list(model.state_dict()) == KEYS[old_name]


def test_every_model_registered_before_is_still_registered():
    assert len(list_models()) == len(KEYS)
