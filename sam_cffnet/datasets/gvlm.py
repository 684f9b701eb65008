"""GVLM v1.0 (Zhang et al. 2023), object-extraction version: 17 very large RGB scenes read by windows."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from ..tiling import tile_windows
from .checks import verify_png
from .errors import DatasetLayoutError, LayoutNotFoundError
from .files import PathLike
from .labels import LabelEncoding, LabelReader, label_raster_layout, raster_label_values, raster_label_window
from .plotting import RGBPlotMixin
from .rasters import cache_as_tiled_tiff, open_raster, raster_shape, read_raster_window

LAYOUT = """\
<root>/                                  (or <root>/GVLM_Object_Extraction/)
└── GVLM_Object_Extraction/
    ├── A Luoi_Vietnam/{im.png, ref.png}     im: RGB uint8; ref: 0/255 (255 = landslide), same size
    ├── Asakura_Japan/{im.png, ref.png}
    └── ... (17 site folders, names with spaces)"""


#: GVLM reference maps: 0 = background, 255 = landslide (the authors' demo reads ``ref == 255`` as landslide). Not
#: verified on real files, so undocumented intermediate values (anti-aliased edges) are read with ``> 127`` and
#: warned about, while a map that rule would make all background (0/1) or all landslide stops with an error.
LABELS = LabelEncoding(
    name='GVLM ref.png maps',
    values=(0, 255),
    threshold=127,
    other_values='warn',
    hint='Write ref.png as a single-channel 0/255 PNG (from a 0/1 array m: '
    'Image.fromarray((m > 0).astype(np.uint8) * 255).save(path)).',
)


class GVLM(RGBPlotMixin, LabelReader, NonGeoDataset):
    """GVLM (Global Very-high-resolution Landslide Mapping) dataset, single-temporal object-extraction version.

    Post-event Google Earth RGB scenes of 17 landslide sites worldwide with binary landslide maps. Scenes are
    large (up to 10808 x 7424 px), so this dataset is *tiled*: each sample is one window of ``tile_size`` read with
    rasterio windowed reads (a whole scene is never loaded). Tiles follow :func:`~sam_cffnet.tiling.tile_windows`
    (stride, last tile snapped to the scene edge; scenes smaller than a tile are zero-padded).

    Dataset features:

    * 17 sites, 0.59 m GSD, ~490 Mpx in total; ~7.6k non-overlapping 256 x 256 tiles
    * binary reference maps ``ref.png`` (0/255 on disk; returned as 0/1 with ``ref > 127``)

    Reference values (:data:`LABELS`): single-channel 0/255. A palette ``ref.png`` is read through its palette (the
    colours a viewer shows) and an RGB(A) one only when its channels are equal. Undocumented values that ``> 127``
    still splits into both classes are read with a warning; a map that the rule would make all background (a 0/1
    map) or all landslide, or a colour-coded map, stops with an error naming the file: at construction with
    ``verify=True`` (the map is streamed strip by strip, never decoded whole) and in every window read.

    Dataset format::

        GVLM_Object_Extraction/<Site>/im.png   RGB (an alpha channel, if any, is dropped)
        GVLM_Object_Extraction/<Site>/ref.png  landslide map, 0/255, same size

    Bands: ``red, green, blue`` uint8 (returned as float 0..255, not normalized).

    Sample: ``image`` float32 ``(3, T, T)``, ``mask`` int64 ``(T, T)`` in {0, 1}.

    Licence: "available for free to researchers for only non-commercial use" (official README; no LICENSE file).

    If you use this dataset in your research, please cite:

    * Zhang, X., Yu, W., Pun, M.-O., Shi, W. (2023). Cross-domain landslide mapping from large-scale remote sensing
      images using prototype-guided domain-aware progressive representation learning. ISPRS Journal of
      Photogrammetry and Remote Sensing 197, 1-17. https://doi.org/10.1016/j.isprsjprs.2023.01.018
    """

    all_bands = ('red', 'green', 'blue')
    rgb_bands = ('red', 'green', 'blue')
    classes = ('background', 'landslide')
    all_sites = (
        'A Luoi_Vietnam', 'Asakura_Japan', 'Askja_Iceland', 'Big Sur_United States', 'Chimanimani_Zimbabwe',
        'Jiuzhaigou_China', 'Kaikoura_New Zealand', 'Kodagu_India', 'Kupang_Indonesia', 'Kurucasile_Turkey',
        'Los Lagos_Chile', 'Osh_Kyrgyzstan', 'Santa Catarina_Brazil', 'Shimen_China', 'Taitung_China',
        'Tbilisi_Georgia', 'Tenejapa_Mexico',
    )  # fmt: skip
    image_name = 'im.png'
    mask_name = 'ref.png'
    layout = LAYOUT
    label_encoding = LABELS

    def __init__(
        self,
        root: PathLike = 'data',
        sites: Sequence[str] | None = None,
        tile_size: int = 256,
        stride: int | None = None,
        transforms: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        verify: bool = True,
        cache_dir: PathLike | None = None,
        gdal_cache_mb: int | None = 64,
    ) -> None:
        """Index the sites and their tiles.

        Args:
            root: Folder holding ``GVLM_Object_Extraction/`` (or that folder itself).
            sites: Site folder names to use (default: every site found).
            tile_size: Tile edge in pixels.
            stride: Step between tiles (default ``tile_size``: no overlap).
            transforms: Callable applied to each sample dict.
            verify: Walk every PNG's chunks (CRC) at construction to catch truncated/corrupt files, and stream
                every ``ref.png`` (strips of 256 rows) to check its values against the documented 0/255.
            cache_dir: Optional folder for a one-time conversion of each scene to a tiled (256 x 256 blocks),
                deflate-compressed GeoTIFF, written strip by strip (bounded memory). PNG has no random access: a
                window near the bottom of a scene requires decoding every row above it, so shuffled training reads
                from PNG are slow; reads from the tiled copy cost one tile. Copies are reused while the source
                file's size and mtime are unchanged.
            gdal_cache_mb: GDAL block-cache limit set (process-wide) when this dataset first opens a file, unless
                the ``GDAL_CACHEMAX`` environment variable is set. GDAL's default (5% of RAM) would keep decoded
                PNG scanlines of a whole scene, so memory would grow with the scene size; 64 MB holds a full-width
                strip of tiles of the largest GVLM scene. None: leave GDAL's setting alone.

        Raises:
            LayoutNotFoundError: If the root is missing or holds no site folder.
            DatasetLayoutError: For a site without ``ref.png``, size mismatches, unknown sites, unreadable files
                or (with ``verify``) reference maps that are not 0/255.
        """
        self.root = root
        self.tile_size = int(tile_size)
        self.stride = int(stride or tile_size)
        self.transforms = transforms
        self.data_root = self._find_root(Path(root))
        found = sorted(p.name for p in self.data_root.iterdir() if (p / self.image_name).is_file())
        if not found:
            raise LayoutNotFoundError(root, f'no <Site>/{self.image_name} folders in {self.data_root}', LAYOUT)
        if sites is not None:
            missing = [s for s in sites if s not in found]
            if missing:
                raise DatasetLayoutError(self.data_root, f'sites {missing} not found (available: {found})', LAYOUT)
            found = [s for s in found if s in sites]
        self.sites: list[str] = list(found)
        self.cache_dir = cache_dir
        self.gdal_cache_mb = gdal_cache_mb
        self._sources: dict[str, tuple[Path, Path]] = {}
        self._ref_layouts: dict[str, tuple[list[int], np.ndarray | None]] = {}
        self.scene_shapes: dict[str, tuple[int, int]] = {}
        self.tiles: list[tuple[int, int, int]] = []  # (site index, row, col)
        checks: list[str | None] = []
        for si, site in enumerate(self.sites):
            img, ref = self.data_root / site / self.image_name, self.data_root / site / self.mask_name
            if not ref.is_file():
                raise DatasetLayoutError(img, f'image without reference map (expected {ref})', LAYOUT)
            if verify:
                verify_png(img)
                verify_png(ref)
            h, w, c = raster_shape(img)
            if c < 3:
                raise DatasetLayoutError(img, f'expected an RGB image (3 or 4 bands), got {c} band(s)')
            rh, rw, ref_layout = self._ref_layout(ref)
            if (rh, rw) != (h, w):
                raise DatasetLayoutError(ref, f'reference size {rw}x{rh} != image size {w}x{h} (WxH)')
            if verify:
                checks.append(self.label_encoding.check(raster_label_values(ref), ref))
            self.scene_shapes[site] = (h, w)
            self._ref_layouts[site] = ref_layout
            if cache_dir is not None:
                self._sources[site] = tuple(  # type: ignore[assignment]
                    cache_as_tiled_tiff(p, Path(cache_dir) / site / (p.stem + '.tif'), bands)
                    for p, bands in ((img, [1, 2, 3]), (ref, ref_layout[0]))
                )
            else:
                self._sources[site] = (img, ref)
            self.tiles.extend((si, r, c) for r, c in tile_windows(h, w, self.tile_size, self.stride))
        self.warn_labels(checks)
        self._handles: dict[Path, Any] = {}
        self._pid = os.getpid()

    @staticmethod
    def _ref_layout(path: Path) -> tuple[int, int, tuple[list[int], np.ndarray | None]]:
        """``(height, width, (bands, palette lut))`` of a reference map, from its header."""
        try:
            with open_raster(path) as src:
                return src.height, src.width, label_raster_layout(src)
        except Exception as err:
            raise DatasetLayoutError(path, f'unreadable raster ({err})') from err

    def _find_root(self, root: Path) -> Path:
        if not root.is_dir():
            raise LayoutNotFoundError(root, 'the folder does not exist', LAYOUT)
        for cand in (root / 'GVLM_Object_Extraction', root):
            if cand.is_dir() and any((p / self.image_name).is_file() for p in cand.iterdir() if p.is_dir()):
                return cand
        raise LayoutNotFoundError(root, 'no GVLM_Object_Extraction/<Site>/im.png found', LAYOUT)

    def __len__(self) -> int:
        """Number of tiles over all selected sites."""
        return len(self.tiles)

    @property
    def tile_sites(self) -> list[str]:
        """Site name of every tile (used for site-level splits)."""
        return [self.sites[si] for si, _, _ in self.tiles]

    def _handle(self, path: Path) -> Any:
        # one open rasterio dataset per file and per process (handles are not shared across forked workers)
        if os.getpid() != self._pid:
            self._handles, self._pid = {}, os.getpid()
        if not self._handles and self.gdal_cache_mb and 'GDAL_CACHEMAX' not in os.environ:
            from rasterio.env import set_gdal_config

            set_gdal_config('GDAL_CACHEMAX', int(self.gdal_cache_mb) * 2**20)
        if path not in self._handles:
            self._handles[path] = open_raster(path)
        return self._handles[path]

    def __getstate__(self) -> dict[str, Any]:
        """Drop open file handles when pickled (spawned DataLoader workers)."""
        state = self.__dict__.copy()
        state['_handles'] = {}
        return state

    def read_window(self, site: str, row: int, col: int, height: int, width: int) -> dict[str, Tensor]:
        """Read an arbitrary window of a scene.

        Args:
            site: Site folder name.
            row: Row offset.
            col: Column offset.
            height: Window height.
            width: Window width.

        Returns:
            ``{'image': (3, height, width) float32, 'mask': (height, width) int64}`` (zero-padded past the edge).

        Raises:
            DatasetLayoutError: If the window cannot be read, or its reference values are not 0/255 (see
                :data:`LABELS`).
        """
        img_path, ref_path = self._sources[site]
        bands, lut = self._ref_layouts[site]
        try:
            img_src = self._handle(img_path)
            image = read_raster_window(img_src, row, col, height, width, bands=[1, 2, 3][: img_src.count])
            ref = read_raster_window(self._handle(ref_path), row, col, height, width, bands=bands)
        except Exception as err:
            raise DatasetLayoutError(img_path.parent, f'failed to read window ({row}, {col}): {err}') from err
        source = self.data_root / site / self.mask_name
        return {
            'image': torch.from_numpy(image.astype(np.float32)),
            'mask': self.label_mask(raster_label_window(ref, lut, source), source),
        }

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Load one tile.

        Args:
            index: Tile index.

        Returns:
            ``{'image': (3, T, T) float32, 'mask': (T, T) int64}``.
        """
        si, row, col = self.tiles[index]
        sample = self.read_window(self.sites[si], row, col, self.tile_size, self.tile_size)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
