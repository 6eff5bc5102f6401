"""The model-zoo table of docs/models.md, generated from the registry so it cannot drift.

Regenerate with ``python -m musictag.zoo_table > docs/models.md``; a test compares the two.
"""

from __future__ import annotations

import torch

from .presets.registry import list_models, model_entry

__all__ = ["zoo_markdown"]

_DATASETS = (("mtat", "MTAT"), ("msd", "MSD"), ("jamendo", "MTG-Jamendo"))


def _published(published: dict[str, float]) -> str:
    parts = []
    for key, label in _DATASETS:
        roc, pr = published.get(f"{key}_roc_auc"), published.get(f"{key}_pr_auc")
        if roc is not None or pr is not None:
            fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
            parts.append(f"{label} {fmt(roc)} / {fmt(pr)}")
    for key, value in sorted(published.items()):
        if not any(key.startswith(d + "_") for d, _ in _DATASETS):
            parts.append(f"{key} {value:.4f}")
    return "; ".join(parts) or "–"


def zoo_markdown(n_tags: int = 50) -> str:
    """The zoo table in Markdown: one row per registered model, parameters counted for ``n_tags``."""
    rows = [
        "| name | class | paper | input | frontend | parameters (50 tags) | published ROC-AUC / PR-AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in list_models():
        entry = model_entry(name)
        torch.manual_seed(0)
        model = entry.create(n_tags=n_tags)
        n_params = sum(p.numel() for p in model.parameters())
        check = " ✓" if entry.reference_params == n_params else ""
        seconds = model.crop_samples / model.sample_rate
        frontend = type(model.frontend).__name__.replace("Frontend", "")
        if hasattr(model.frontend, "n_mels"):
            frontend += f" {model.frontend.n_mels}"
        rows.append(
            f"| `{name}` | `{type(model).__name__}` | {entry.paper} | "
            f"{model.crop_samples} @ {model.sample_rate // 1000} kHz ({seconds:.2f} s) | {frontend} | "
            f"{n_params:,}{check} | {_published(dict(entry.published))} |"
        )
    return "\n".join(rows) + "\n"


_HEADER = """# Model zoo

Every architecture is a plain `nn.Module` backbone (`musictag/models/`), a named preset of the one
`Tagger` (`musictag/presets/`), and a registry entry. Pick one by name and every shared feature
(losses, crop averaging, metrics, fine-tuning, embeddings, non-local blocks) comes with it:

```python
from musictag import create_model, list_models, list_pretrained, load_tagger
list_models()                          # every name below
model = create_model("short_chunk_resnet", n_tags=50, lr=1e-4)
model = create_model("fcn", n_tags=10, nonlocal_after=["layer3"])   # non-local blocks (Wang et al. 2018)
list_pretrained()                      # published weights: "mtat_fcn", ..., "jamendo_musicnn"
model = create_model("mtat_fcn", weights_dir="<shared>/pretrained/sota")   # or MUSICTAG_PRETRAINED
model = create_model("fcn", pretrained="mtat", tags=["rock", "jazz"])      # backbone kept, new head
model = create_model("crnn", pretrained="runs/crnn/best.ckpt")             # a musictag checkpoint
model = load_tagger("any.ckpt")        # any musictag checkpoint, whatever its class
```

**One way to get a model.** `create_model` builds any registered model, freshly initialised or
with weights: published ones (read from local files, converted by `musictag.pretrained`;
nothing is downloaded) or a musictag checkpoint of that model. `load_tagger` loads any checkpoint
without knowing its class. `finetune_tagger` (`load_tagger` + a new head + training settings) and
`convert_sota` (the published weights into the registered model) are built on these two. A
family has one name for its registry entry, backbone and class: `short_chunk_resnet`,
`ShortChunkResNet`, `ShortChunkResNetTagger`. The names used before 0.2 (`short`, `short_res`,
`short_res_nonlocal`, `hcnn`, `attention`, and the backbones `mel_gru`, `mel_transformer`) still
work with a `DeprecationWarning`, so old configs and checkpoints load.

Columns: the input length is the published one (samples at the sample rate); parameters are
counted for 50 tags, and ✓ marks a count equal to the published PyTorch implementation's
(Won et al. 2020; checked by `tests/models/test_zoo.py`); published figures are macro ROC-AUC /
PR-AUC (Won et al. 2020 for MTAT, MSD and MTG-Jamendo; other figures as named, see
`../shared/REFERENCES.md` for sources). A model trained with musictag reports the same metrics
(`test/roc_auc_macro`, `test/pr_auc_macro`, per track, mean over 16 crops).

This table is generated: `python -m musictag.zoo_table > docs/models.md`.

"""

_FOOTER = """
## Notes

- `crnn`, `fcn`, `musicnn` load the published weights exactly: see [pretrained.md](pretrained.md).
- `samplecnn_se` is the `SampleCNNSE` of Won et al. (residual SE blocks with amplifying ratio 1 and
  a 512-unit dense layer); `samplecnn_res`, `samplecnn_rese` and the multi-level `*_ml` variants
  follow Kim, Lee & Nam (2018) with ratio 16 (their published ROC-AUC used 22.05-kHz audio).
- `cnnsa` uses no position embeddings, like the published model (its count only matches
  without them); `position_embeddings=True` adds learned ones.
- `gru` and `transformer` are the ~700k-parameter sequence taggers on 128-band mel frames of the
  FMA-large GRU-vs-Transformer comparison (their published micro PR-AUC is with crop averaging);
  the exact settings of that comparison were not available, ours are documented in
  `musictag/models/sequence.py`.
- `harmonic_cnn` computes its harmonic STFT inside the backbone (`backbone.hstft`, as published),
  so its STFT settings (`n_fft`, `hop_length`, `bw_Q` ...) are backbone settings and its frontend
  is the waveform identity.
"""


def main() -> None:
    print(_HEADER + zoo_markdown() + _FOOTER, end="")


if __name__ == "__main__":
    main()
