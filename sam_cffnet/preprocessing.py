"""What goes into the model: one definition of the input pipeline for training, prediction, features and mapping.

A :class:`Preprocessing` object says which bands feed the model and how raw values become model inputs. The
datamodules build one from their settings and apply it to every batch (``on_after_batch_transfer``); the task
stores it in every checkpoint; ``predict``, ``extract-features`` and ``map`` apply the one restored from the
checkpoint. So training and inference cannot drift apart: there is no second copy of any rule below.

Pipeline of :meth:`Preprocessing.__call__` on a batch of raw values (all on the batch's device)::

    image (B, C, h, w) raw   --resize to tile_size (bilinear) if h, w differ-->
                             --x = (clip(x * scale, lo, hi) - mean) / std, per band-->   image (B, C, T, T)
    dem   (B, K, h, w) raw   --resize (bilinear)--> per-tile, per-channel z-score -->
                             appended to image (dem_mode 'band') | batch['dem'] ('separate') | dropped ('none')
    mask  (B, h, w)          --resize (nearest-exact: no half-pixel shift)--> (mask > 0) as int64

Band selection happens before (the datasets read only the selected bands); for a raster that holds more bands,
:meth:`Preprocessing.raster_band_indexes` says which to read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError, DataError

__all__ = ['DemMode', 'Normalization', 'Preprocessing', 'resize_sample']

Normalization = Literal['reference', 'dataset', 'none']
DemMode = Literal['none', 'band', 'separate']

#: How masks are resized. ``'nearest-exact'`` samples the source pixel under each target pixel centre, as PIL's
#: NEAREST does; torch's ``'nearest'`` is half a source pixel off the bilinear image (0.12-0.45 % of the mask pixels
#: of a real Bijie chip flip between 1024 and 256 px).
MASK_INTERPOLATION = 'nearest-exact'


def resize_sample(sample: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Resize the spatial dims of a sample or batch: bilinear for ``image``/``dem``, nearest-exact for masks.

    Args:
        sample: ``image`` ``(C, H, W)`` or ``(B, C, H, W)``, optional ``dem`` (same rank) and ``mask``/``prediction``
            ``(H, W)`` or ``(B, H, W)``; other keys are kept as they are.
        height: target height.
        width: target width.

    Returns:
        A new dict with the resized tensors (dtypes kept for masks, float32 for images).
    """
    out = dict(sample)
    for key in ('image', 'dem'):
        if key in out and tuple(out[key].shape[-2:]) != (height, width):
            x = out[key]
            batched = x.dim() == 4
            x = x if batched else x.unsqueeze(0)
            x = F.interpolate(x.float(), size=(height, width), mode='bilinear', align_corners=False, antialias=False)
            out[key] = x if batched else x.squeeze(0)
    for key in ('mask', 'prediction'):
        if key in out and tuple(out[key].shape[-2:]) != (height, width):
            m = out[key]
            batched = m.dim() == 3
            m = m if batched else m.unsqueeze(0)
            m = F.interpolate(m.unsqueeze(1).float(), size=(height, width), mode=MASK_INTERPOLATION).squeeze(1)
            m = m.to(sample[key].dtype)
            out[key] = m if batched else m.squeeze(0)
    return out


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Preprocessing:
    """The input pipeline of a model (see the module docstring).

    Attributes:
        bands: names of the spectral bands fed to the model, in order.
        band_indices: their 0-based positions in ``all_bands``.
        all_bands: the dataset's full band list (a raster holding all of them is accepted by ``map``).
        scale: per-band factor applied first.
        clip: ``(lo, hi)`` applied after ``scale``, or ``None``.
        mean: per-band mean subtracted after clipping.
        std: per-band std divided by last.
        normalization: the name of the scheme the constants come from (``'reference'``, ``'dataset'``, ``'none'``).
        stats_source: where the constants come from (for logs and the checkpoint).
        dem_mode: ``'none'``, ``'band'`` (DEM channels appended to the image) or ``'separate'`` (``batch['dem']``).
        dem_bands: names of the DEM/slope channels.
        dem_normalization: ``'per_tile_zscore'`` or ``'none'``.
        tile_size: edge of the square tiles the model is trained on.
        stride: step between training tiles where a dataset is tiled (default ``tile_size``).
        rgb_indices: positions of red, green and blue in ``bands`` (for pictures), or ``None``.
        dataset: the dataset the pipeline was made for (``'reference'`` for the authors' pipeline).
    """

    bands: tuple[str, ...]
    scale: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: tuple[float, float] | None = None
    band_indices: tuple[int, ...] = ()
    all_bands: tuple[str, ...] = ()
    normalization: str = 'custom'
    stats_source: str = ''
    dem_mode: DemMode = 'none'
    dem_bands: tuple[str, ...] = ()
    dem_normalization: Literal['per_tile_zscore', 'none'] = 'per_tile_zscore'
    tile_size: int = 256
    stride: int = 0
    rgb_indices: tuple[int, int, int] | None = None
    dataset: str = ''

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, 'bands', tuple(str(b) for b in self.bands))
        n = len(self.bands)
        for name in ('scale', 'mean', 'std'):
            values = _floats(getattr(self, name))
            if len(values) != n:
                raise ConfigError(f'preprocessing: {name} has {len(values)} values for {n} bands {list(self.bands)}')
            set_(self, name, values)
        if any(s == 0 for s in self.std):
            raise ConfigError(f'preprocessing: std must be non-zero, got {list(self.std)}')
        if self.clip is not None:
            set_(self, 'clip', (float(self.clip[0]), float(self.clip[1])))
        set_(self, 'band_indices', tuple(int(i) for i in (self.band_indices or range(n))))
        set_(self, 'all_bands', tuple(self.all_bands or self.bands))
        set_(self, 'dem_bands', tuple(self.dem_bands) if self.dem_mode != 'none' else ())
        if self.dem_mode not in ('none', 'band', 'separate'):
            raise ConfigError(f"dem_mode must be 'none', 'band' or 'separate', got {self.dem_mode!r}")
        if self.dem_normalization not in ('per_tile_zscore', 'none'):
            raise ConfigError(f"dem_normalization must be 'per_tile_zscore' or 'none', got {self.dem_normalization!r}")
        if int(self.tile_size) <= 0:
            raise ConfigError(f'tile_size must be positive, got {self.tile_size}')
        set_(self, 'tile_size', int(self.tile_size))
        set_(self, 'stride', int(self.stride or self.tile_size))
        if self.rgb_indices is None:
            found = [self.bands.index(c) for c in ('red', 'green', 'blue') if c in self.bands]
            set_(self, 'rgb_indices', tuple(found) if len(found) == 3 else None)
        else:
            set_(self, 'rgb_indices', tuple(int(i) for i in self.rgb_indices))

    # ------------------------------------------------------------------ construction
    @classmethod
    def reference(cls, num_channels: int = 3, tile_size: int = 256) -> Preprocessing:
        """The SAM-CFFNet authors' pipeline: RGB uint8 / 255 into [0, 1], no mean/std (``ToTensor``)."""
        n = num_channels
        names = ('red', 'green', 'blue') if n == 3 else tuple(f'band{i + 1}' for i in range(n))
        return cls(
            bands=names, scale=(1 / 255,) * n, clip=(0.0, 1.0), mean=(0.0,) * n, std=(1.0,) * n,
            normalization='reference', stats_source='SAM-CFFNet reference: uint8 / 255 (ToTensor), no mean/std',
            tile_size=tile_size, dataset='reference',
        )  # fmt: skip

    def with_tile_size(self, tile_size: int) -> Preprocessing:
        """A copy for another tile size."""
        return replace(self, tile_size=tile_size, stride=0)

    # ------------------------------------------------------------------ what it delivers
    @property
    def num_channels(self) -> int:
        """Channels of the model's ``image`` input (spectral bands, plus DEM channels with ``dem_mode='band'``)."""
        return len(self.bands) + (len(self.dem_bands) if self.dem_mode == 'band' else 0)

    @property
    def dem_channels(self) -> int:
        """Channels of ``batch['dem']`` (``dem_mode='separate'``), else 0."""
        return len(self.dem_bands) if self.dem_mode == 'separate' else 0

    def denormalization(self) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` per band such that ``x * std + mean`` maps model inputs back to raw values.

        The clip is ignored. This is what torchgeo's ``K.Denormalize(datamodule.mean, datamodule.std)`` expects before
        plotting.
        """
        scale = torch.tensor(self.scale, dtype=torch.float64)
        mean = torch.tensor(self.mean, dtype=torch.float64) / scale
        std = torch.tensor(self.std, dtype=torch.float64) / scale
        return mean.float(), std.float()

    # ------------------------------------------------------------------ the pipeline
    def _vector(self, values: tuple[float, ...], like: Tensor) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)

    def normalize_image(self, image: Tensor) -> Tensor:
        """``(clip(x * scale, lo, hi) - mean) / std`` per band.

        Args:
            image: ``(B, C, H, W)`` raw values of :attr:`bands`.

        Returns:
            ``(B, C, H, W)`` float32.
        """
        if image.shape[1] != len(self.bands):
            raise DataError(
                f'the image has {image.shape[1]} bands, the preprocessing expects {len(self.bands)} '
                f'({", ".join(self.bands)})'
            )
        x = image.float() * self._vector(self.scale, image)
        if self.clip is not None:
            x = x.clamp(*self.clip)
        return (x - self._vector(self.mean, image)) / self._vector(self.std, image)

    def normalize_dem(self, dem: Tensor) -> Tensor:
        """Per-tile, per-channel z-score of DEM/slope channels (or identity).

        Args:
            dem: ``(B, K, H, W)`` raw values.

        Returns:
            ``(B, K, H, W)`` float32.
        """
        dem = dem.float()
        if self.dem_normalization == 'none':
            return dem
        mu = dem.mean(dim=(-2, -1), keepdim=True)
        sd = dem.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        return (dem - mu) / sd

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Raw batch -> model inputs (see the module docstring).

        Args:
            batch: ``image`` ``(B, C, h, w)`` raw values, optional ``dem`` ``(B, K, h, w)`` and ``mask``
                ``(B, h, w)``; other keys pass through.

        Returns:
            A new dict: ``image`` float32 ``(B, num_channels, T, T)``, ``dem`` float32 ``(B, K, T, T)`` with
            ``dem_mode='separate'``, ``mask`` int64 ``(B, T, T)`` in {0, 1}.
        """
        out = dict(batch)
        t = self.tile_size
        if tuple(out['image'].shape[-2:]) != (t, t):
            out = resize_sample(out, t, t)
        out['image'] = self.normalize_image(out['image'])
        if 'dem' in out:
            dem = out.pop('dem')
            if self.dem_mode == 'band':
                out['image'] = torch.cat([out['image'], self.normalize_dem(dem)], dim=1)
            elif self.dem_mode == 'separate':
                out['dem'] = self.normalize_dem(dem)
        elif self.dem_mode != 'none':
            raise DataError(f"dem_mode={self.dem_mode!r} needs batch['dem'] ({', '.join(self.dem_bands)})")
        if 'mask' in out:
            out['mask'] = (out['mask'] > 0).long()
        return out

    # ------------------------------------------------------------------ rasters
    def raster_band_indexes(
        self, count: int, path: str = '<raster>', alpha_last: bool = False
    ) -> tuple[list[int], list[int]]:
        """Which bands of a raster with ``count`` bands feed the model: ``(spectral, dem)`` 1-based indexes.

        Accepted: exactly the trained bands in training order (then the DEM/slope bands when the model uses them),
        optionally followed by an alpha band; or the dataset's full band list (e.g. all 14 Landslide4Sense bands),
        from which :attr:`band_indices` are selected.

        Raises:
            DataError: the band count fits neither layout (the message names the raster and both layouts).
        """
        names, dem_names = list(self.bands), list(self.dem_bands)
        n, k = len(names), len(dem_names)
        data_count = count - 1 if alpha_last and count > n + k else count
        if data_count == n + k:
            return list(range(1, n + 1)), list(range(n + 1, n + k + 1))
        full = list(self.all_bands)
        if len(full) != n and data_count == len(full) and all(b in full for b in dem_names):
            return [i + 1 for i in self.band_indices], [full.index(b) + 1 for b in dem_names]
        expected = f'{n + k} bands ({", ".join(names + dem_names)})'
        if len(full) != n:
            expected += f' or the full {self.dataset or "dataset"} band list ({len(full)} bands)'
        raise DataError(
            f'{path}: the raster has {count} band(s) but the model was trained on {expected}; the band selection comes '
            f'from the checkpoint, give a raster holding those bands in that order'
        )

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (stored in checkpoints; :meth:`from_dict` restores it)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data['formula'] = 'x = (clip(x * scale, clip[0], clip[1]) - mean) / std  (per band; no clip when clip is null)'
        data['num_channels'] = self.num_channels
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Preprocessing) -> Preprocessing:
        """Restore from :meth:`to_dict` (informative keys such as ``formula`` are ignored)."""
        if isinstance(data, Preprocessing):
            return data
        known = {f.name for f in fields(cls)}
        args = {k: v for k, v in data.items() if k in known}
        if args.get('clip') is not None:
            args['clip'] = tuple(args['clip'])
        if args.get('rgb_indices') is not None:
            args['rgb_indices'] = tuple(args['rgb_indices'])
        if args.get('dem_normalization') is None:
            args.pop('dem_normalization', None)
        return cls(**args)

    def describe(self) -> str:
        """One line for logs."""
        dem = f', DEM {self.dem_mode} ({", ".join(self.dem_bands)})' if self.dem_mode != 'none' else ''
        return (
            f'bands {", ".join(self.bands)}; normalization {self.normalization} ({self.stats_source or "custom"}); '
            f'tiles {self.tile_size} px{dem}'
        )
