"""Pure ``torch.nn`` backbones, one file per family, registered by family name in ``BACKBONES``.

This package imports nothing of musictag above it. Named, configured taggers (presets with their
input length, sample rate and frontend) are registered in :mod:`musictag.presets.registry`.
"""

from __future__ import annotations

from .attention import CNNSA
from .base import Backbone
from .compact import CompactCNN
from .crnn import CRNN
from .fcn import FCN
from .harmonic import HarmonicCNN, HarmonicSTFT
from .musicnn import Musicnn
from .nonlocal_block import NonLocal2d, insert_nonlocal
from .registry import BACKBONES, build_backbone, register_backbone
from .resnet import ResNet
from .samplecnn import SampleCNN
from .sequence import MelGRU, MelTransformer
from .shortchunk import ShortChunkCNN, ShortChunkResNet
from .transfer import TransferBackbone

register_backbone("crnn", CRNN)
register_backbone("fcn", FCN)
register_backbone("musicnn", Musicnn)
register_backbone("samplecnn", SampleCNN)
register_backbone("short_chunk_cnn", ShortChunkCNN)
register_backbone("short_chunk_resnet", ShortChunkResNet)
register_backbone("harmonic_cnn", HarmonicCNN)
register_backbone("cnnsa", CNNSA)
register_backbone("gru", MelGRU)
register_backbone("transformer", MelTransformer)
register_backbone("resnet", ResNet)
register_backbone("compact_cnn", CompactCNN)
register_backbone("transfer", TransferBackbone)

__all__ = [
    "BACKBONES",
    "Backbone",
    "CRNN",
    "CompactCNN",
    "FCN",
    "Musicnn",
    "SampleCNN",
    "CNNSA",
    "HarmonicCNN",
    "HarmonicSTFT",
    "MelGRU",
    "MelTransformer",
    "NonLocal2d",
    "ResNet",
    "ShortChunkCNN",
    "ShortChunkResNet",
    "TransferBackbone",
    "insert_nonlocal",
    "build_backbone",
    "register_backbone",
]
