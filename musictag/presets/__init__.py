"""Named taggers: thin presets of :class:`~musictag.tagger.Tagger`, one file per family.

Importing this package registers every named model (``musictag.list_models()``).
"""

from __future__ import annotations

from .attention import CNNSATagger
from .crnn import CRNNTagger
from .fcn import FCNTagger
from .harmonic import HarmonicCNNTagger
from .musicnn import MusicnnTagger
from .resnet import ResNetTagger
from .samplecnn import SampleCNNTagger
from .sequence import GRUTagger, TransformerTagger
from .shortchunk import ShortChunkCNNTagger, ShortChunkResNetTagger

__all__ = [
    "CRNNTagger",
    "FCNTagger",
    "MusicnnTagger",
    "SampleCNNTagger",
    "CNNSATagger",
    "GRUTagger",
    "HarmonicCNNTagger",
    "ResNetTagger",
    "ShortChunkCNNTagger",
    "ShortChunkResNetTagger",
    "TransformerTagger",
]
