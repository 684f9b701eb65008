"""Pictures people look at: tiles with ground truth and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ['display_rgb', 'percentile_stretch', 'plot_segmentation', 'prediction_figure']


def percentile_stretch(image: np.ndarray, lower: float = 2, upper: float = 98) -> np.ndarray:
    """Stretch an ``(H, W, C)`` image to [0, 1] per channel using percentiles (for display only).

    Args:
        image: Array ``(H, W, C)``.
        lower: Lower percentile.
        upper: Upper percentile.

    Returns:
        Float array in [0, 1].
    """
    image = image.astype(np.float32)
    lo = np.nanpercentile(image, lower, axis=(0, 1), keepdims=True)
    hi = np.nanpercentile(image, upper, axis=(0, 1), keepdims=True)
    return np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1)


def plot_segmentation(
    image: np.ndarray,
    mask: Tensor | np.ndarray | None,
    prediction: Tensor | np.ndarray | None,
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """An RGB image with its mask and optional prediction side by side (the datasets' ``plot``).

    Args:
        image: Display-ready array ``(H, W, 3)`` in [0, 1].
        mask: Ground truth ``(H, W)`` or None.
        prediction: Prediction ``(H, W)`` or None.
        show_titles: Whether to add panel titles.
        suptitle: Optional figure title.

    Returns:
        A matplotlib Figure.
    """
    panels: list[tuple[np.ndarray, str, dict]] = [(image, 'Image', {})]
    binary = {'cmap': 'gray', 'vmin': 0, 'vmax': 1, 'interpolation': 'none'}
    if mask is not None:
        panels.append((np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask), 'Mask', binary))
    if prediction is not None:
        pred = np.asarray(prediction.detach().cpu() if isinstance(prediction, Tensor) else prediction)
        panels.append((pred, 'Prediction', binary))
    fig = Figure(figsize=(4 * len(panels), 4))
    axs = fig.subplots(1, len(panels), squeeze=False)
    for ax, (arr, title, kw) in zip(axs[0], panels, strict=True):
        ax.imshow(arr, **kw)
        ax.axis('off')
        if show_titles:
            ax.set_title(title)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def display_rgb(image: Tensor, bands: Sequence[int] | None = None) -> np.ndarray:
    """A displayable H x W x 3 array in [0, 1] from a C x H x W tensor (2-98 % percentile stretch per tile)."""
    img = image.detach().float().cpu()
    if bands is None:
        bands = [0, 1, 2] if img.shape[0] >= 3 else [0, 0, 0]
    return percentile_stretch(img[list(bands)].permute(1, 2, 0).numpy())


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
