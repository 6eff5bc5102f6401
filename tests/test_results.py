"""Result records: choosing the tags to report."""

from __future__ import annotations

import numpy as np

from musictag.results import select_tags


def test_select_tags_and_result_dict():
    scores = np.array([0.1, 0.9, 0.5, 0.5])
    tags = ["a", "b", "c", "d"]
    assert select_tags(scores, tags, top_k=3) == [("b", 0.9), ("c", 0.5), ("d", 0.5)]
    assert select_tags(scores, tags, threshold=0.5) == [("b", 0.9), ("c", 0.5), ("d", 0.5)]
    assert select_tags(scores, tags, top_k=1, threshold=0.95) == []
