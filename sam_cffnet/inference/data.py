"""The data side of whole-scene mapping on Lightning: chunks of windows read by DataLoader workers.

Each process gets its share of the run's unfinished blocks (:meth:`MappingWork.setup_attempt`, a contiguous run of
about equal cost); each block is fed as chunks of at most ``batch_size`` windows. A :class:`ChunkDataset` item is
one chunk: DataLoader workers read it from the raster (GDAL reads overlap the model's compute), in pinned memory on
GPUs, and windows without any data are dropped before they reach the device. A read failure does not stop the
run: the item carries the error, the scene is marked failed (the other scenes finish) and its remaining chunks
are skipped without reading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset

from .raster import SceneInfo, WindowReader
from .signals import ignore_stop_signals
from .windows import Block

__all__ = ['Chunk', 'ChunkDataset', 'ChunkIndex', 'MappingDataModule', 'MappingWork']


@dataclass(frozen=True)
class Chunk:
    """Consecutive windows of one block, predicted in one forward pass.

    Attributes:
        scene: scene index.
        block: block index in the scene's :meth:`~sam_cffnet.inference.windows.ScenePlan.blocks`.
        part: position of the chunk in its block.
        parts: chunks in the block (the block is complete after part ``parts - 1``).
        windows: ``(row, col)`` top-left pixels of the windows.
    """

    scene: int
    block: int
    part: int
    parts: int
    windows: tuple[tuple[int, int], ...]


class ChunkIndex(Sequence[Chunk]):
    """A process's chunks, made on demand from its blocks: 20 bytes per block, nothing per window or chunk.

    So the work list of a scene of any size (a 1,000,000 x 1,000,000 px VRT: 106,000 blocks, 30 million windows)
    takes a few MB and is made in a second.

    Args:
        grids: per scene, its blocks (indexed as in :meth:`~sam_cffnet.inference.windows.ScenePlan.blocks`).
        scenes: scene of each block to do, in order.
        blocks: index of each block in its scene's grid.
        chunks: chunks of each block.
        batch_size: windows per chunk.
    """

    def __init__(
        self,
        grids: Sequence[Sequence[Block]],
        scenes: Sequence[int],
        blocks: Sequence[int],
        chunks: Sequence[int],
        batch_size: int,
    ) -> None:
        self.grids = list(grids)
        self.scenes = np.asarray(scenes, np.int32)
        self.blocks = np.asarray(blocks, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(chunks, np.int64))]).astype(np.int64)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> Chunk:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(f'chunk {i} of {len(self)}')
        k = int(np.searchsorted(self.offsets, i, side='right')) - 1
        scene, index = int(self.scenes[k]), int(self.blocks[k])
        block = self.grids[scene][index]
        part = i - int(self.offsets[k])
        parts = int(self.offsets[k + 1] - self.offsets[k])
        return Chunk(scene, index, part, parts, block.chunk(part, self.batch_size))

    def blocks_per_scene(self) -> Counter[int]:
        """Blocks to do per scene."""
        return Counter(int(s) for s in self.scenes)


class MappingWork(Protocol):
    """What the data module needs from a mapping run (:class:`~sam_cffnet.inference.runner.MappingRun`)."""

    def setup_attempt(self, trainer: Trainer) -> Sequence[Chunk]:
        """Prepare the state (rank 0), then return this process's chunks."""
        ...

    def dataset(self, chunks: Sequence[Chunk]) -> Dataset:
        """The dataset of these chunks."""
        ...


class ChunkDataset(Dataset):
    """Reads chunks of windows.

    Args:
        scenes: the run's scenes.
        bands: per scene, the 1-based ``(spectral, dem)`` bands to read.
        chunks: this process's chunks, in order.
        tile: window edge T.
        scene_failed: tells whether a scene has already failed (its chunks are then not read).

    Item ``i``: ``chunk`` (``i``), ``keep`` (indexes of the chunk's windows holding data, a list), ``image``
    ``(n, C, T, T)`` raw values, ``valid`` ``(n, T, T)`` bool, ``dem`` ``(n, K, T, T)`` when the model uses one,
    ``error`` (``''``, or the read error naming the file), ``skip`` (the scene had failed).
    """

    def __init__(
        self,
        scenes: Sequence[SceneInfo],
        bands: Sequence[tuple[Sequence[int], Sequence[int]]],
        chunks: Sequence[Chunk],
        tile: int,
        scene_failed: Any = None,
    ) -> None:
        self.scenes = list(scenes)
        self.bands = [(list(s), list(d)) for s, d in bands]
        self.chunks = chunks
        self.tile = tile
        self.scene_failed = scene_failed
        self.reader = WindowReader(tile)

    def __len__(self) -> int:
        return len(self.chunks)

    def _empty(self, i: int, scene: int, error: str, skip: bool) -> dict[str, Any]:
        spectral, dem = self.bands[scene]
        t = self.tile
        out: dict[str, Any] = {
            'chunk': i, 'keep': [], 'image': torch.zeros(0, len(spectral), t, t),
            'valid': torch.zeros(0, t, t, dtype=torch.bool), 'error': error, 'skip': skip,
        }  # fmt: skip
        if dem:
            out['dem'] = torch.zeros(0, len(dem), t, t)
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        chunk = self.chunks[i]
        scene = self.scenes[chunk.scene]
        if self.scene_failed is not None and self.scene_failed(chunk.scene):
            return self._empty(i, chunk.scene, '', True)
        spectral, dem = self.bands[chunk.scene]
        try:
            image, dem_t, valid = self.reader.read(scene, spectral, dem, chunk.windows)
        except MemoryError:
            raise
        except Exception as err:  # GDAL read errors: the scene fails, the run goes on
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            return self._empty(i, chunk.scene, f'{scene.path}: cannot read pixels: {detail}', False)
        keep = valid.flatten(1).any(1)
        out: dict[str, Any] = {
            'chunk': i, 'keep': keep.nonzero()[:, 0].tolist(), 'image': image[keep], 'valid': valid[keep],
            'error': '', 'skip': False,
        }  # fmt: skip
        if dem_t is not None:
            out['dem'] = dem_t[keep]
        return out


class MappingDataModule(LightningDataModule):
    """Feeds each process its chunks (``Trainer.predict``; the Trainer's distributed sampler must be off).

    Args:
        work: the mapping run.
        num_workers: DataLoader worker processes reading the rasters (0: read in the main process).
    """

    def __init__(self, work: MappingWork, num_workers: int = 0) -> None:
        super().__init__()
        self.work = work
        self.num_workers = num_workers
        self.chunks: Sequence[Chunk] = []

    def setup(self, stage: str) -> None:
        """Prepare the run's state and take this process's share of the work."""
        assert self.trainer is not None
        self.chunks = self.work.setup_attempt(self.trainer)

    def predict_dataloader(self) -> DataLoader:
        """Chunks in order, one per step (``batch_size=None``), pinned on CUDA devices."""
        assert self.trainer is not None
        pin = self.trainer.strategy.root_device.type == 'cuda'
        workers = self.num_workers if len(self.chunks) > 1 else 0
        return DataLoader(
            self.work.dataset(self.chunks), batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
            prefetch_factor=4 if workers else None, persistent_workers=False,
            worker_init_fn=ignore_stop_signals if workers else None,
        )  # fmt: skip
