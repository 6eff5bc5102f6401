"""Export a tagger as one graph, waveform in, scores out (ONNX, TorchScript, ``torch.export``).

The exported graph is the tagger's own modules with the log-mel frontend switched to its
real-valued conv1d STFT (``stft="conv"``: nnAudio's sine and cosine kernels, the same buffers as the
``torch.stft`` path): ONNX has no complex tensors, so the CPU default ``torch.stft`` does not export,
while the conv path computes the same features (~1e-6 relative, see
:class:`~musictag.frontend.LogMelFrontend`). The tagger itself is never modified: the graph is built
from a copy.

Input ``waveform`` float32 ``[batch, samples]`` mono at the model's sample rate, with ``batch``
dynamic and ``samples`` fixed to the model's window (``crop_samples``: the length it was trained
on); output ``scores`` ``[batch, n_tags]``, sigmoid (multi-label) or softmax (single-label).
Longer audio is cut into windows and the window scores aggregated as the model card says
(``docs/deploy.md`` shows how). Beside the graph, :func:`model_card` writes what a user of the
file needs: tags, rates, window, hop, aggregation, thresholds, provenance and licence.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .calibration import Calibration
    from .tagger import Tagger

__all__ = [
    "FORMATS",
    "ExportResult",
    "ScoringGraph",
    "card_path_for",
    "example_waveforms",
    "export_checkpoint",
    "export_model",
    "model_card",
    "run_exported",
]

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "torch-export": ".pt2"}
"""Export formats and their usual file extensions."""

CARD_VERSION = 1


class ScoringGraph(nn.Module):
    """A tagger as one module from waveform to scores, ready to export.

    Args:
        model: The tagger; it is copied to the CPU in eval mode, with a log-mel frontend switched
            to its conv1d STFT.

    Shape:
        input: ``[batch, samples]`` float32 at the model's sample rate.
        output: ``[batch, n_tags]`` sigmoid (multi-label) or softmax (single-label) scores.
    """

    def __init__(self, model: Tagger) -> None:
        super().__init__()
        tagger = copy.deepcopy(model).cpu().eval()
        if hasattr(tagger.frontend, "stft"):
            tagger.frontend.stft = "conv"  # real-valued: exports, same features
        self.frontend = tagger.frontend
        self.backbone = tagger.backbone
        self.head = tagger.head
        self.multi_label = bool(tagger.hparams.multi_label)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(self.frontend(waveform)))
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)


def example_waveforms(sample_rate: int, samples: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    """Music-like test input: ``n`` clips of musictag's synthetic collection, ``[n, samples]``.

    Args:
        sample_rate: Rate of the clips.
        samples: Length of each clip.
        n: Number of clips.
        seed: Seed of the clip specifications.
    """
    from .data.sources.synth import render_clip, sample_spec

    seconds = samples / sample_rate
    clips = []
    for i in range(n):
        spec = sample_spec(np.random.default_rng([seed, i]), i, max(seconds, 1.0))
        x = render_clip(spec, sample_rate)[:samples]
        clips.append(np.pad(x, (0, samples - x.size)))
    return torch.from_numpy(np.stack(clips).astype(np.float32))


def _dynamic_batch() -> dict[str, Any]:
    return {"waveform": {0: torch.export.Dim("batch", min=1, max=4096)}}


def export_model(
    model: Tagger,
    path: str | Path,
    *,
    format: str = "onnx",
    opset: int | None = None,
) -> Path:
    """Write ``model`` as one graph from ``waveform`` to ``scores``.

    Args:
        model: A tagger.
        path: Output file (``.onnx``, ``.pt`` TorchScript, ``.pt2`` ``torch.export`` program).
        format: ``"onnx"`` (``torch.onnx.export``, the ``torch.export``-based exporter; needs the
            ``export`` extra), ``"torchscript"`` (``torch.jit.trace``) or ``"torch-export"``
            (``torch.export.save``; load with ``torch.export.load(path).module()``).
        opset: ONNX opset; default: the exporter's.

    Returns:
        ``path``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {sorted(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = ScoringGraph(model)
    example = torch.zeros(2, int(model.crop_samples))
    example.normal_(generator=torch.Generator().manual_seed(0)).mul_(0.1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer notes)
        if format == "onnx":
            _export_onnx(graph, example, path, opset)
        elif format == "torchscript":
            traced = torch.jit.trace(graph, example, check_trace=False)
            torch.jit.save(traced, str(path))
        else:
            program = torch.export.export(graph, (example,), dynamic_shapes=_dynamic_batch())
            torch.export.save(program, path)
    return path


def _export_onnx(graph: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> None:
    try:
        import onnx  # noqa: F401 - the exporter needs it; say so before a long trace
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs onnx and onnxscript: pip install 'musictag[export]' ({e})"
        ) from e
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=["waveform"],
            output_names=["scores"],
            dynamic_shapes=_dynamic_batch(),
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def run_exported(path: str | Path, waveform: np.ndarray | torch.Tensor) -> np.ndarray:
    """Scores of an exported graph (onnxruntime for ``.onnx``, torch for the others).

    Args:
        path: A file written by :func:`export_model`.
        waveform: ``[batch, samples]`` at the model's rate and window.

    Returns:
        float32 ``[batch, n_tags]``.
    """
    path = Path(path)
    x = np.ascontiguousarray(np.asarray(waveform, dtype=np.float32))
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(
                f"running {path} needs onnxruntime: pip install 'musictag[export]' ({e})"
            ) from e
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["scores"], {"waveform": x})[0]
    if path.suffix == ".pt2":
        module = torch.export.load(path).module()
    else:
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _weights_record(meta: dict[str, Any], license: str | None) -> dict[str, Any]:
    source = meta.get("source")
    if source:  # written by `musictag convert-sota`
        text = str(source.get("license", ""))
        return {
            "origin": "published",
            "name": source.get("name"),
            "file": source.get("file"),
            "sha256": source.get("sha256"),
            "repository": source.get("repository"),
            "paper": source.get("paper"),
            "license": license or ("MIT" if text.startswith("MIT") else text or None),
            "license_note": text or None,
        }
    return {
        "origin": "trained with musictag",
        "license": license,
        "license_note": None if license else "not stated: pass --license when exporting",
    }


def model_card(
    model: Tagger,
    *,
    file: str | None = None,
    format: str = "onnx",
    checkpoint: str | Path | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    calibration: Calibration | None = None,
    license: str | None = None,
    parity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card: what a user of an exported graph needs to feed it and read its output.

    Fields are described in ``docs/deploy.md``.

    Args:
        model: The exported tagger.
        file: Name of the exported file.
        format: Export format.
        checkpoint: The checkpoint it came from (name and SHA-256 are recorded).
        checkpoint_meta: The checkpoint's ``musictag`` entry (provenance of converted weights).
        calibration: Per-tag thresholds, if the checkpoint has them.
        license: Licence of the weights (SPDX id); default: MIT for the converted published
            weights, unstated otherwise.
        parity: Result of the export check (max |difference| against PyTorch, input).

    Returns:
        A JSON-ready dict.
    """
    from . import __version__
    from .pretrained import file_sha256

    hp = model.hparams
    rate, window = int(model.sample_rate), int(model.crop_samples)
    frontend: dict[str, Any] = {"type": str(hp.get("frontend", "logmel")), "sample_rate": rate}
    fe = model.frontend
    for name in ("n_fft", "hop_length", "n_mels", "power", "amin", "top_db"):
        if hasattr(fe, name):
            frontend[name] = getattr(fe, name)
    if hasattr(fe, "n_fft"):
        frontend["stft"] = "conv1d (real-valued; same features as torch.stft)"
        frontend.update(
            {k: v for k, v in dict(hp.get("frontend_kwargs") or {}).items() if k not in frontend}
        )
    multi = bool(hp.multi_label)
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "musictag_version": __version__,
        "format": format,
        "file": file,
        "model": {
            "class": type(model).__name__,
            "backbone": type(model.backbone).__name__,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "input": {
            "name": "waveform",
            "dtype": "float32",
            "shape": ["batch", window],
            "dynamic_axes": ["batch"],
            "sample_rate": rate,
            "channels": "mono (average the channels)",
        },
        "output": {
            "name": "scores",
            "dtype": "float32",
            "shape": ["batch", len(model.tags)],
            "activation": "sigmoid" if multi else "softmax",
            "multi_label": multi,
        },
        "tags": list(model.tags),
        "sample_rate": rate,
        "window": {"samples": window, "seconds": window / rate},
        "hop": {"samples": window, "seconds": window / rate, "note": "default: no overlap"},
        "aggregation": str(hp.get("tta", "mean")),
        "eval_crops": int(hp.get("eval_crops", 16)),
        "frontend": frontend,
        "thresholds": _thresholds_record(model, calibration),
        "weights": _weights_record(dict(checkpoint_meta or {}), license),
    }
    if checkpoint is not None:
        card["checkpoint"] = {"file": Path(checkpoint).name, "sha256": file_sha256(checkpoint)}
    if parity is not None:
        card["parity"] = parity
    return card


def _thresholds_record(model: Tagger, cal: Calibration | None) -> dict[str, Any]:
    if cal is None:
        return {"method": "fixed", "default": 0.5, "values": None}
    d = cal.to_dict()
    values = cal.for_tags(model.tags)
    return {
        "method": d["method"],
        "target_precision": d["target_precision"],
        "split": d["split"],
        "n_tracks": d["n_tracks"],
        "values": {t: float(v) for t, v in zip(model.tags, values)},
        "uncalibrated": d["uncalibrated"],
        "f1_on_split": d["scores_f1"],
    }


def card_path_for(path: str | Path) -> Path:
    """Where the model card of an exported file goes: ``model.onnx`` → ``model.json``."""
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: the exported graph cannot be a .json file (the card is)")
    return path.with_suffix(".json")


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote.

    Attributes:
        path: The exported graph.
        card_path: The model card (JSON).
        card: The card's contents.
        max_abs_diff: Largest |score difference| against PyTorch on the check input, or
            ``None`` without a check.
    """

    path: Path
    card_path: Path
    card: dict[str, Any]
    max_abs_diff: float | None = None


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    format: str | None = None,
    opset: int | None = None,
    license: str | None = None,
    check: bool = True,
) -> ExportResult:
    """Export a checkpoint and write its model card beside it (``musictag export``).

    Args:
        checkpoint: A musictag checkpoint (calibrated thresholds, if stored, go into the card).
        output: The graph to write; the card goes to :func:`card_path_for` ``(output)``.
        format: ``"onnx"``, ``"torchscript"`` or ``"torch-export"``; default: from the
            extension of ``output`` (``.onnx``, ``.pt``, ``.pt2``).
        opset: ONNX opset.
        license: Licence of the weights for the card.
        check: Run the exported graph on two synthetic music clips and compare with PyTorch
            (the figure goes into the card as ``parity``).

    Returns:
        An :class:`ExportResult`.
    """
    from .calibrate import read_checkpoint
    from .calibration import Calibration
    from .checkpoints import load_tagger

    output = Path(output)
    if format is None:
        by_ext = {ext: name for name, ext in FORMATS.items()}
        if output.suffix not in by_ext:
            raise ValueError(
                f"{output}: cannot tell the format from the extension; pass --format "
                f"({', '.join(FORMATS)}) or use {', '.join(FORMATS.values())}"
            )
        format = by_ext[output.suffix]
    card_path = card_path_for(output)
    meta = read_checkpoint(checkpoint)["musictag"]
    model = load_tagger(checkpoint)
    export_model(model, output, format=format, opset=opset)
    parity, diff = None, None
    if check:
        x = example_waveforms(model.sample_rate, model.crop_samples)
        with torch.no_grad():
            ref = model.scores(model(x)).numpy()
        diff = float(np.abs(run_exported(output, x) - ref).max())
        parity = {
            "max_abs_diff": diff,
            "against": "PyTorch (torch.stft frontend)",
            "input": f"{x.shape[0]} synthetic music clips (musictag.data.sources.synth)",
        }
    card = model_card(
        model,
        file=output.name,
        format=format,
        checkpoint=checkpoint,
        checkpoint_meta=meta,
        calibration=Calibration.from_dict(meta["thresholds"]) if meta.get("thresholds") else None,
        license=license,
        parity=parity,
    )
    if format == "onnx":
        import onnx

        proto = onnx.load(str(output), load_external_data=False)
        opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
        card["onnx"] = {"opset": max(opsets), "ir_version": int(proto.ir_version)}
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult(output, card_path, card, diff)
