"""Plots of samples of the RGB datasets."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

__all__ = ['RGBPlotMixin']


class RGBPlotMixin:
    """``plot(sample)`` for datasets whose first three image channels are R, G, B (Bijie, GVLM, reference tiles)."""

    def plot(self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None) -> Any:
        """Plot a sample (image, mask and ``prediction`` when present).

        Args:
            sample: A sample as returned by ``__getitem__`` (``image`` needs at least the 3 RGB channels first;
                0-255 values are scaled, others percentile-stretched).
            show_titles: Add titles.
            suptitle: Figure title.

        Returns:
            A matplotlib Figure.

        Raises:
            RGBBandsMissingError: If the image has fewer than 3 channels.
        """
        from torchgeo.datasets import RGBBandsMissingError

        from ..visualize import percentile_stretch, plot_segmentation

        image = sample['image']
        if image.shape[0] < 3:
            raise RGBBandsMissingError()
        rgb = image[:3].permute(1, 2, 0).cpu().numpy()
        rgb = np.clip(rgb / 255.0, 0, 1) if rgb.max() > 1.5 else percentile_stretch(rgb)
        return plot_segmentation(rgb, sample.get('mask'), sample.get('prediction'), show_titles, suptitle)
