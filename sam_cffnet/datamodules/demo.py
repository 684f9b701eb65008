"""The demo datamodule: Bijie layout, synthetic data generated on first use (no download)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from ..datasets.demo import make_demo_bijie
from .bijie import BijieDataModule

__all__ = ['DemoBijieDataModule']


class DemoBijieDataModule(BijieDataModule):
    """:class:`BijieDataModule` over a small synthetic landslide-like dataset written to ``root`` if absent.

    Args:
        root: where the synthetic dataset lives (written once, never overwritten).
        num_landslide: landslide chips to generate.
        num_non_landslide: non-landslide chips to generate.
        **kwargs: everything :class:`BijieDataModule` takes.
    """

    #: the CLI does not require ``root`` to exist: :meth:`prepare_data` writes it.
    creates_root = True

    def __init__(
        self, root: str = 'runs/demo_data/bijie', num_landslide: int = 24, num_non_landslide: int = 12, **kwargs: Any
    ):
        super().__init__(root=root, **kwargs)
        self.num_landslide = num_landslide
        self.num_non_landslide = num_non_landslide

    def prepare_data(self) -> None:
        """Write the synthetic dataset (kept if it already exists)."""
        path = make_demo_bijie(self.root, self.num_landslide, self.num_non_landslide)
        rank_zero_info(f'demo data (synthetic, Bijie layout): {path}')
