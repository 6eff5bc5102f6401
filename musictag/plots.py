"""The package's figures (matplotlib, drawn off-screen): tag activation along a track,
precision-recall curves and tag scores over time for training, and SE excitations per tag.

The ``plot_*`` functions save a PNG and return its path; the others draw into a figure that the
caller logs (:class:`~musictag.callbacks.TagPlots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from .analysis import ExcitationStats
    from .results import TagResult

__all__ = ["plot_excitations", "plot_tag_activation", "pr_curves", "tags_over_time"]


def plot_tag_activation(
    result: TagResult,
    path: str | Path,
    top_k: int = 5,
    tags: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw per-window tag probabilities along the track (a line per tag) and save a PNG.

    Args:
        result: A :class:`TagResult` (from sliding windows).
        path: Output image (``.png``; any format matplotlib writes).
        top_k: Draw the ``top_k`` tags with the highest track score.
        tags: Draw these tags instead.
        title: Figure title; default: the file name.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    if tags is None:
        names = [t for t, _ in result.top(top_k)]
    else:
        unknown = [t for t in tags if t not in result.tags]
        if unknown:
            raise ValueError(f"tags not in the model's vocabulary: {unknown}")
        names = list(tags)
    idx = [result.tags.index(t) for t in names]
    half = result.window / (2.0 * result.sample_rate)
    centres = result.times + half
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for i, name in zip(idx, names):
        ys = result.window_scores[:, i]
        if len(ys) == 1:
            ax.plot([centres[0] - half, centres[0] + half], [ys[0], ys[0]], label=name)
        else:
            ax.plot(centres, ys, marker=".", label=f"{name} ({result.scores[i]:.2f})")
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title or (Path(result.source).name if result.source else "tag activation"))
    return _save(fig, path)


def plot_excitations(
    stats: ExcitationStats,
    path: str | Path,
    blocks: Sequence[str] | None = None,
    sort_channels: bool = True,
    ncols: int = 3,
) -> Path:
    """Mean excitation per tag, one subplot per SE block (Kim et al. 2018, Fig. 4), saved as PNG.

    Args:
        stats: From :func:`collect_excitations`.
        path: Output image.
        blocks: Blocks to draw; default: all.
        sort_channels: Order each block's channels by their mean excitation over all tracks
            (descending), so that differences between tags stand out; otherwise channel order.
        ncols: Subplots per row.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    names = list(blocks or stats.blocks)
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, block in zip(axes, names):
        means = stats.mean(block)
        order = np.argsort(-stats.overall(block)) if sort_channels else np.arange(means.shape[1])
        for row, tag in enumerate(stats.tags):
            if stats.counts[row]:
                ax.plot(means[row, order], lw=0.9, label=f"{tag} ({stats.counts[row]})")
        ax.set_title(block, fontsize="small")
        ax.set_ylim(0, 1)
        ax.set_xlabel(
            "channel" + (" (sorted by mean)" if sort_channels else ""), fontsize="x-small"
        )
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)) or 1)
    fig.suptitle(f"mean SE excitation per tag ({stats.n_tracks} tracks)")
    return _save(fig, path)


def pr_curves(
    fig: Any,
    scores: torch.Tensor,
    targets: torch.Tensor,
    tags: list[str],
    n_best: int = 3,
    n_worst: int = 3,
) -> bool:
    """Draw the PR curves of the best and worst tags into ``fig``.

    Args:
        fig: A matplotlib figure.
        scores: ``[tracks, n_tags]`` crop-averaged scores.
        targets: ``[tracks, n_tags]`` 0/1 targets.
        tags: Tag names.
        n_best: Tags with the highest average precision to draw.
        n_worst: Tags with the lowest average precision to draw.

    Returns:
        ``False`` when no tag has a positive track (nothing drawn).
    """
    from torchmetrics.functional.classification import (
        binary_average_precision,
        binary_precision_recall_curve,
    )

    present = [j for j in range(scores.shape[1]) if targets[:, j].any()]
    if not present:
        return False
    ap = {j: float(binary_average_precision(scores[:, j], targets[:, j])) for j in present}
    ranked = sorted(present, key=lambda j: -ap[j])
    panels = [("best tags", ranked[:n_best])]
    worst = [j for j in ranked[::-1][:n_worst] if j not in panels[0][1]]
    if worst:
        panels.append(("worst tags", worst))
    for i, (title, chosen) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j in chosen:
            precision, recall, _ = binary_precision_recall_curve(scores[:, j], targets[:, j])
            ax.step(
                recall.numpy(),
                precision.numpy(),
                where="post",
                label=f"{tags[j]} ({ap[j]:.2f})",
            )
        ax.set(
            title=f"{title} (AP)",
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return True


def tags_over_time(
    fig: Any,
    key: str,
    per_crop: torch.Tensor,
    target: torch.Tensor,
    tags: list[str],
    n_tags: int = 10,
) -> None:
    """Draw a track's per-crop scores of its top tags as a heat map into ``fig``.

    Args:
        fig: A matplotlib figure.
        key: Track key (title).
        per_crop: ``[K, n_tags]`` scores of the track's K evenly spaced crops.
        target: ``[n_tags]`` the track's targets.
        tags: Tag names.
        n_tags: Highest-scoring tags to draw (the true tags are drawn whatever their score).
    """
    mean = per_crop.mean(0)
    chosen = set(mean.argsort(descending=True)[:n_tags].tolist())
    chosen |= set(target.nonzero().flatten().tolist())  # the true tags, whatever their score
    order = sorted(chosen, key=lambda j: -float(mean[j]))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(
        per_crop[:, order].T.numpy(), aspect="auto", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_xticks(range(per_crop.shape[0]))
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([tags[j] + (" *" if target[j] > 0 else "") for j in order])
    ax.set(title=f"{key}: tag scores over time (* = true tag)", xlabel="crop (in time order)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
