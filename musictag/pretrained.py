"""Published weights as musictag taggers: configs as data, and converters that check every tensor.

The taggers of Won et al. (2020, minzwon/sota-music-tagging-models) are plain torch 1.2
``state_dict`` files. :func:`convert_sota` builds the matching musictag tagger (``FCNTagger``,
``CRNNTagger`` or ``MusicnnTagger`` with the exact log-mel frontend and the tag list in output
order) and loads every tensor through an explicit key map; :func:`save_sota_checkpoint` writes the
result as an ordinary Lightning checkpoint that :func:`musictag.load_tagger` restores. What is known
about each file (sha256, input length, tags, frontend, paper, license) is a frozen
:class:`PretrainedConfig` in :data:`SOTA_CONFIGS`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoints import save_tagger
from .presets.registry import model_entry
from .tagger import Tagger

__all__ = [
    "MSD_TAGS",
    "MTAT_TAGS",
    "MTG_JAMENDO_TAGS",
    "SOTA_CONFIGS",
    "PretrainedConfig",
    "SotaFrontend",
    "convert_sota",
    "detect_sota_arch",
    "file_sha256",
    "list_pretrained",
    "map_sota_state_dict",
    "pretrained_config",
    "save_sota_checkpoint",
    "sota_weights_path",
]

log = logging.getLogger(__name__)

SOTA_REPO = "https://github.com/minzwon/sota-music-tagging-models"
SOTA_TREE = "36aa13b"
SOTA_PAPER = (
    "Won, Ferraro, Bogdanov & Serra 2020, Evaluation of CNN-based automatic music tagging models, "
    "SMC 2020, arXiv:2006.00751"
)
SOTA_LICENSE = (
    "MIT License, Copyright (c) 2020 Music Technology Group, Universitat Pompeu Fabra "
    "(code by Minz Won); the LICENSE says 'the Software' and does not name the weights separately"
)

# split/mtat/tags.npy: the column order of binary.npy and of the model outputs
MTAT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

# split/msd/50tagList.txt in file order (the upstream label vectors follow it)
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip

# MTG-Jamendo top-50: upstream encodes labels with sklearn's LabelBinarizer().fit(TAGS), whose
# classes_ are *sorted*, so the output columns are alphabetical, not the order of TAGS in eval.py.
MTG_JAMENDO_TAGS: tuple[str, ...] = tuple(
    sorted(
        [f"genre---{g}" for g in (
            "alternative", "ambient", "atmospheric", "chillout", "classical", "dance",
            "downtempo", "easylistening", "electronic", "experimental", "folk", "funk", "hiphop",
            "house", "indie", "instrumentalpop", "jazz", "lounge", "metal", "newage",
            "orchestral", "pop", "popfolk", "poprock", "reggae", "rock", "soundtrack", "techno",
            "trance", "triphop", "world",
        )]
        + [f"instrument---{i}" for i in (
            "acousticguitar", "bass", "computer", "drummachine", "drums", "electricguitar",
            "electricpiano", "guitar", "keyboard", "piano", "strings", "synthesizer", "violin",
            "voice",
        )]
        + [f"mood/theme---{m}" for m in ("emotional", "energetic", "film", "happy", "relaxing")]
    )
)  # fmt: skip


@dataclass(frozen=True)
class SotaFrontend:
    """The log-mel frontend of the published taggers (torchaudio 0.3.0 + ``spec_bn``).

    ``MelSpectrogram(16000, n_fft=512, hop 256, f_max=8000, n_mels=96)``: periodic Hann window,
    centred frames with reflect padding, power spectrum, HTK mel triangles without normalisation;
    ``AmplitudeToDB()``: ``10·log10(clamp(x, 1e-10))`` with reference 1.0 and no ``top_db``; then
    ``BatchNorm2d(1)`` used with its running statistics.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_scale: str = "htk"
    norm: str | None = None
    amin: float = 1e-10
    top_db: float | None = None
    standardize: bool = True

    def logmel_kwargs(self) -> dict[str, Any]:
        """Arguments of :class:`~musictag.frontend.LogMelFrontend` besides ``sample_rate`` and ``n_mels``."""
        kw = asdict(self)
        del kw["sample_rate"], kw["n_mels"]
        return kw


@dataclass(frozen=True)
class PretrainedConfig:
    """What is known about one published checkpoint (timm ``PretrainedCfg`` / torchaudio bundle style).

    Attributes:
        name: ``"<dataset>_<arch>"``, e.g. ``"mtat_fcn"``.
        arch: Upstream model type (``"fcn"``, ``"crnn"``, ``"musicnn"``).
        model: musictag registry name the weights load into.
        dataset: ``"mtat"``, ``"msd"`` or ``"jamendo"``.
        dataset_name: Full dataset name.
        file: Path of the weights inside the upstream ``models/`` folder (and the shared copy).
        sha256: SHA-256 of the file as committed upstream.
        size_bytes: File size in bytes.
        params: Trainable parameters of the upstream model (= of the musictag tagger).
        input_samples: Input length of one crop in samples.
        tags: Tag names in output-column order.
        frontend: The exact feature settings.
        published: Published test figures of this architecture on this dataset (Won et al. 2020).
        paper: Citation.
        license: License of the upstream repository.
        source: Upstream repository and tree.
    """

    name: str
    arch: str
    model: str
    dataset: str
    dataset_name: str
    file: str
    sha256: str
    size_bytes: int
    params: int
    input_samples: int
    tags: tuple[str, ...]
    frontend: SotaFrontend = field(default_factory=SotaFrontend)
    published: tuple[tuple[str, float], ...] = ()
    paper: str = SOTA_PAPER
    license: str = SOTA_LICENSE
    source: str = f"{SOTA_REPO} (tree {SOTA_TREE})"

    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects, in Hz."""
        return self.frontend.sample_rate

    def build(self) -> Tagger:
        """A freshly initialised musictag tagger of this architecture, tags and frontend."""
        return model_entry(self.model).create(
            n_tags=len(self.tags),
            tags=list(self.tags),
            n_mels=self.frontend.n_mels,
            sample_rate=self.frontend.sample_rate,
            crop_samples=self.input_samples,
            frontend_kwargs=self.frontend.logmel_kwargs(),
        )


_DATASETS = {
    "mtat": ("MagnaTagATune (top-50, cleaned split)", MTAT_TAGS),
    "msd": ("Million Song Dataset (Last.fm top-50)", MSD_TAGS),
    "jamendo": ("MTG-Jamendo (autotagging top-50)", MTG_JAMENDO_TAGS),
}
_ARCHS = {"fcn": ("fcn", 464000, 447_732), "crnn": ("crnn", 464000, 394_100), "musicnn": ("musicnn", 48000, 784_300)}  # fmt: skip
# (dataset, arch): sha256, size in bytes, (ROC-AUC, PR-AUC) of Won et al. 2020
_FILES = {
    ("mtat", "fcn"): ("e89d751202d38c3ae69855782bc27010f87051958dbec64f5aa762364dbac271", 1902811, (0.9005, 0.4295)),
    ("mtat", "crnn"): ("cd22fc70cafd06f8f2bfc7dd795abccb1f4b50d5b09094c39ad100baf87475a3", 1687630, (0.8722, 0.3625)),
    ("mtat", "musicnn"): ("690ace3bb5d49d90dd38fe3ec05a1185350b3bc3742bd7ee941f56b649b2c893", 3257172, (0.9106, 0.4493)),
    ("msd", "fcn"): ("6012aa7eecf864a8081faedca56af054521e8dfb9c5c98659a3dd5d3e1e66f21", 1902815, (0.8744, 0.2970)),
    ("msd", "crnn"): ("ebb99855ed0c83f38845db9cfb383dd6fc70938bc58701dcb66e18af9ee7fbea", 1687711, (0.8499, 0.2469)),
    ("jamendo", "fcn"): ("7bce08a66dbc70d096b0a330f44b4cacd9aa25519b83489fbb98f2164a194e2b", 1902815, (0.8255, 0.2801)),
    ("jamendo", "crnn"): ("0a558989c0793f488cb677d188464c91f47c007f7c70473230e55537ca598215", 1687626, (0.7978, 0.2358)),
    ("jamendo", "musicnn"): ("66280f4859376377c47f64313c7ac889a3201fdb06a01bf6e94ac6e619081bb5", 3257168, (0.8226, 0.2713)),
}  # fmt: skip


def _make_configs() -> dict[str, PretrainedConfig]:
    configs = {}
    for (dataset, arch), (sha, size, (roc, pr)) in _FILES.items():
        model, samples, params = _ARCHS[arch]
        dataset_name, tags = _DATASETS[dataset]
        name = f"{dataset}_{arch}"
        configs[name] = PretrainedConfig(
            name=name,
            arch=arch,
            model=model,
            dataset=dataset,
            dataset_name=dataset_name,
            file=f"{dataset}/{arch}/best_model.pth",
            sha256=sha,
            size_bytes=size,
            params=params,
            input_samples=samples,
            tags=tags,
            published=(("roc_auc", roc), ("pr_auc", pr)),
        )
    return configs


SOTA_CONFIGS: dict[str, PretrainedConfig] = _make_configs()
"""Every published checkpoint we can convert, by ``"<dataset>_<arch>"``."""


def list_pretrained() -> list[str]:
    """Names of the known published checkpoints (``"jamendo_crnn"``, ..., ``"mtat_musicnn"``)."""
    return sorted(SOTA_CONFIGS)


def pretrained_config(arch: str, dataset: str) -> PretrainedConfig:
    """The :class:`PretrainedConfig` of upstream model ``arch`` trained on ``dataset``.

    Raises:
        ValueError: if no such checkpoint is known.
    """
    name = f"{dataset}_{arch}"
    if name not in SOTA_CONFIGS:
        raise ValueError(
            f"no published {arch!r} checkpoint for dataset {dataset!r}; known: {list_pretrained()}"
        )
    return SOTA_CONFIGS[name]


def sota_weights_path(root: str | Path, arch: str, dataset: str) -> Path:
    """Where ``arch``/``dataset`` lies in a copy of the upstream ``models/`` folder: ``root/<dataset>/<arch>/best_model.pth``."""
    return Path(root) / pretrained_config(arch, dataset).file


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------- key mapping
_FB = "spec.mel_scale.fb"
_WINDOW = "spec.spectrogram.window"
# nnAudio computes these from the window at construction; we check the window instead
_DERIVED = ("frontend.mel.stft.wsin", "frontend.mel.stft.wcos", "frontend.mel.stft.window_mask")


def _target_key(key: str) -> str:
    if key == _FB:
        return "frontend.mel.mel_basis"
    if key.startswith("spec_bn."):
        return "frontend." + key.removeprefix("spec_")
    if key.startswith(
        ("dense.", "dense2.")
    ):  # the output layer: dense (FCN, CRNN), dense2 (Musicnn)
        return "head.fc." + key.split(".", 1)[1]
    return "backbone." + key


def detect_sota_arch(state_dict: Mapping[str, Any]) -> str | None:
    """Guess the upstream model type of a state_dict from its keys (``None`` if unknown)."""
    if "layers.0.conv.weight" in state_dict:
        return "musicnn"
    if "layer5.weight_ih_l0" in state_dict:
        return "crnn"
    if "layer5.conv.weight" in state_dict and "layer6.conv.weight" not in state_dict:
        return "fcn"
    return None


def map_sota_state_dict(
    state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], arch: str = "?"
) -> dict[str, torch.Tensor]:
    """Rename and reshape an upstream state_dict into a musictag tagger's.

    The map, checked key by key:

    - ``spec.mel_scale.fb`` ``[n_freq, n_mels]`` → ``frontend.mel.mel_basis`` ``[n_mels, n_freq]``
      (transposed; the stored filterbank is used, so features match the original exactly);
    - ``spec.spectrogram.window`` → checked to be a periodic Hann window (nnAudio bakes the window
      into ``frontend.mel.stft.wsin/wcos``, which are kept as built);
    - ``spec_bn.*`` → ``frontend.bn.*``;
    - ``dense.*`` (FCN, CRNN) / ``dense2.*`` (Musicnn) → ``head.fc.*``;
    - everything else → ``backbone.*`` unchanged (``layer1.conv.weight``, the CRNN GRU ``layer5.*``,
      Musicnn's ``layers.0.conv.weight``, ``dense1.*``, ``bn.*`` ...).

    Args:
        state_dict: The upstream state_dict.
        target: The musictag tagger's ``state_dict()``.
        arch: Name used in error messages.

    Returns:
        A complete state_dict for ``target`` (``load_state_dict(strict=True)`` accepts it).

    Raises:
        ValueError: naming every unused source key, unfilled target key and shape mismatch, or if
            the stored window is not a periodic Hann window of the frontend's size.
    """
    out: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state_dict.items():
        if key == _WINDOW:
            continue
        tkey = _target_key(key)
        if key == _FB:
            value = value.t().contiguous()
        if tkey not in target:
            unexpected.append(key)
        elif tuple(target[tkey].shape) != tuple(value.shape):
            mismatched.append(f"{key} {tuple(value.shape)} -> {tkey} {tuple(target[tkey].shape)}")
        else:
            out[tkey] = value.to(target[tkey].dtype)
    missing = [k for k in target if k not in out and k not in _DERIVED]
    if _WINDOW not in state_dict:
        missing.append(f"(source) {_WINDOW}")
    if unexpected or missing or mismatched:
        found = detect_sota_arch(state_dict)
        hint = f"; the keys look like a {found!r} checkpoint" if found and found != arch else ""
        raise ValueError(
            f"the state_dict does not match arch {arch!r}{hint}: "
            f"unexpected (unused) source keys {unexpected}; "
            f"missing (unfilled) target keys {missing}; shape mismatches {mismatched}"
        )
    window = state_dict[_WINDOW].double().flatten()
    hann = torch.hann_window(window.numel(), periodic=True, dtype=torch.float64)
    n_fft = target["frontend.mel.stft.wsin"].shape[-1]
    if window.numel() != n_fft or not torch.allclose(window, hann, atol=1e-6, rtol=0):
        raise ValueError(
            f"{_WINDOW} ({window.numel()} samples) is not the periodic Hann window of the "
            f"frontend (n_fft={n_fft}); the frontend cannot express it"
        )
    for key in _DERIVED:
        out[key] = target[key]
    return out


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a loadable PyTorch file ({e})") from e
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        raise ValueError(
            f"{path}: this is a Lightning/musictag checkpoint, not an upstream state_dict; "
            "load it with musictag.load_tagger"
        )
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a plain state_dict (a mapping of names to tensors)")
    return dict(sd)


def convert_sota(
    path: str | Path, arch: str, dataset: str, *, verify_sha256: bool = True
) -> Tagger:
    """Load a published ``best_model.pth`` of Won et al. (2020) as a musictag tagger.

    Builds the tagger of :func:`pretrained_config` ``(arch, dataset)`` (tags in output order, the
    exact log-mel frontend, the published input length) and fills every tensor from the file
    through :func:`map_sota_state_dict`. The sigmoid of its output equals the original model's to
    about 1e-6 (see ``docs/pretrained.md``).

    Args:
        path: The upstream ``best_model.pth`` (a torch 1.2 state_dict; loaded with
            ``weights_only=True``).
        arch: Upstream model type: ``"fcn"``, ``"crnn"`` or ``"musicnn"``.
        dataset: ``"mtat"``, ``"msd"`` or ``"jamendo"`` (decides the tag list).
        verify_sha256: Check the file against the published SHA-256 and raise if it differs.

    Returns:
        The tagger, in eval mode.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for an unknown ``(arch, dataset)``, a SHA-256 mismatch, a file that is not a
            state_dict, or keys/shapes that do not fit ``arch`` (the message names them).
    """
    cfg = pretrained_config(arch, dataset)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if verify_sha256:
        digest = file_sha256(path)
        if digest != cfg.sha256:
            raise ValueError(
                f"{path}: SHA-256 {digest} differs from the published {cfg.name} file "
                f"({cfg.sha256}); it is another file or a corrupted copy. Pass "
                "verify_sha256=False to convert it anyway."
            )
    state_dict = _load_state_dict(path)
    model = cfg.build()
    model.load_state_dict(map_sota_state_dict(state_dict, model.state_dict(), arch), strict=True)
    model.eval()
    log.info("converted %s (%s) into %s", path, cfg.name, type(model).__name__)
    return model


def save_sota_checkpoint(path: str | Path, arch: str, dataset: str, out_path: str | Path) -> Path:
    """Convert published weights and write them as a normal Lightning checkpoint.

    ``musictag convert-sota PATH --arch fcn --dataset mtat -o out.ckpt`` calls this. The file holds
    ``state_dict``, ``hyper_parameters`` (so ``FCNTagger.load_from_checkpoint(out_path)`` rebuilds
    the model, tags and frontend included) and the ``musictag`` entry that
    :func:`musictag.load_tagger` reads, extended with ``source``: the upstream file name, SHA-256,
    paper and license. It loads with ``torch.load(weights_only=True)``.

    Args:
        path: The upstream ``best_model.pth``.
        arch: ``"fcn"``, ``"crnn"`` or ``"musicnn"``.
        dataset: ``"mtat"``, ``"msd"`` or ``"jamendo"``.
        out_path: Checkpoint to write (``.ckpt``); parent folders are created.

    Returns:
        ``out_path``.
    """
    cfg = pretrained_config(arch, dataset)
    model = convert_sota(path, arch, dataset)
    # record where the weights came from, next to the class name load_tagger reads
    source = {
        "name": cfg.name,
        "file": cfg.file,
        "sha256": cfg.sha256,
        "repository": cfg.source,
        "paper": cfg.paper,
        "license": cfg.license,
    }
    return save_tagger(model, out_path, {"source": source})
