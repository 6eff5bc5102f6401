"""Named taggers: thin presets of :class:`~musictag.tagger.Tagger`, one file per family.

Importing this package registers every named model (``musictag.list_models()``).
"""

from __future__ import annotations

from .crnn import CRNNTagger

__all__ = ["CRNNTagger"]
