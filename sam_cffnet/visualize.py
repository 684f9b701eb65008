"""Pictures people look at: tiles with ground truth and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ['display_rgb', 'prediction_figure']


def display_rgb(image: Tensor, bands: Sequence[int] | None = None) -> np.ndarray:
    """A displayable H x W x 3 array in [0, 1] from a C x H x W tensor (2-98 % percentile stretch per tile)."""
    img = image.detach().float().cpu()
    if bands is None:
        bands = [0, 1, 2] if img.shape[0] >= 3 else [0, 0, 0]
    rgb = img[list(bands)].permute(1, 2, 0).numpy()
    lo, hi = np.nanpercentile(rgb, 2), np.nanpercentile(rgb, 98)
    return np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)


def prediction_figure(
    images: Tensor, masks: Tensor | None, predictions: Tensor | None, bands: Sequence[int] | None = None
) -> Figure:
    """A grid with one row per tile: image, ground truth, prediction (errors coloured).

    Args:
        images: N x C x H x W.
        masks: N x H x W {0, 1} or None.
        predictions: N x H x W {0, 1} or None.
        bands: the bands shown as RGB.
    """
    n = images.shape[0]
    cols = 1 + (masks is not None) + (predictions is not None)
    fig = Figure(figsize=(3 * cols, 3 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        col = 0
        axes[i, col].imshow(display_rgb(images[i], bands))
        axes[i, col].set_title('image' if i == 0 else '')
        if masks is not None:
            col += 1
            axes[i, col].imshow(masks[i].numpy(), cmap='gray', vmin=0, vmax=1, interpolation='nearest')
            axes[i, col].set_title('ground truth' if i == 0 else '')
        if predictions is not None:
            col += 1
            pred = predictions[i].numpy().astype(bool)
            if masks is not None:
                truth = masks[i].numpy().astype(bool)
                rgb = np.zeros((*pred.shape, 3))
                rgb[pred & truth] = (1, 1, 1)  # true positive: white
                rgb[pred & ~truth] = (1, 0.2, 0.2)  # false positive: red
                rgb[~pred & truth] = (0.2, 0.5, 1)  # false negative: blue
                axes[i, col].imshow(rgb, interpolation='nearest')
                axes[i, col].set_title('prediction (FP red, FN blue)' if i == 0 else '', fontsize=8)
            else:
                axes[i, col].imshow(pred, cmap='gray', vmin=0, vmax=1, interpolation='nearest')
                axes[i, col].set_title('prediction' if i == 0 else '')
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
