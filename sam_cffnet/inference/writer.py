"""Writing while the model computes: a Lightning callback that blends chunks into blocks on a background thread.

``on_predict_batch_end`` hands each chunk's probabilities to a thread, so blending, block encoding, polygon
extraction and GeoTIFF writes overlap the next forward passes. A block is written when its last chunk arrives
(:func:`~sam_cffnet.inference.raster.write_block`: a block file that exists is complete); the process that writes a
scene's last block assembles the scene on a third thread. The queue is bounded, so memory stays bounded when
the disk is slower than the device. An error on the thread (a full disk) stops the run at the next chunk.

:class:`ProgressBar` (rank 0) shows the windows done by all processes (each process records its count in the state
folder) with windows/s and the ETA.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from .data import Chunk
from .polygons import mask_polygons, save_block_polygons, split_at_seams
from .raster import SceneInfo, write_block
from .signals import MappingStopped, StopSignals
from .state import RunState
from .windows import Block, BlockBlender

__all__ = ['BlockWriter', 'ProgressBar', 'WriterSettings']


@dataclass
class WriterSettings:
    """What the writer needs to know about the run.

    Attributes:
        state: the run state.
        scenes: the scenes.
        blocks: per scene, its blocks.
        tile: window edge.
        overlap: window overlap.
        threshold: probability threshold of the mask.
        write_probability: write the probability band.
        write_mask: write the mask band.
        polygons: extract polygons.
        on_scene_complete: called with a scene index when all its blocks are written (assembles it).
        chunks: this process's chunks (set at setup).
        remaining: per scene, the blocks this process still has to write (set at setup).
    """

    state: RunState
    scenes: list[SceneInfo]
    blocks: Sequence[Sequence[Block]]
    tile: int
    overlap: int
    threshold: float
    write_probability: bool
    write_mask: bool
    polygons: bool
    on_scene_complete: Callable[[int], Any]
    chunks: Sequence[Chunk] = field(default_factory=list)
    remaining: dict[int, int] = field(default_factory=dict)


class _Stop:
    pass


class BlockWriter(Callback):
    """Blends the chunks of ``Trainer.predict`` into blocks and writes them (see the module docstring).

    Args:
        settings: the run's settings; ``settings.chunks`` must be this process's chunks (set at setup).
        queue_size: chunks waiting for the thread at most.
    """

    def __init__(self, settings: WriterSettings, queue_size: int = 8) -> None:
        self.s = settings
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None
        self.assembler = ThreadPoolExecutor(1, thread_name_prefix='sam_cffnet-map-assemble')
        self.assemblies: list[Future[Any]] = []
        self.error: BaseException | None = None
        self.rank = 0
        self.blenders: dict[tuple[int, int], BlockBlender] = {}
        self.block_counts: dict[tuple[int, int], dict[str, float]] = {}
        self.counts = {'windows': 0, 'windows_skipped': 0, 'blocks': 0, 'model_seconds': 0.0}
        self.done = 0
        self._last_progress = 0.0

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Start the thread."""
        self.rank = trainer.global_rank
        self.start()

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """Queue the chunk's probabilities (raises the thread's error, if any); stop after a block on a signal."""
        self.put(outputs)
        stop = StopSignals.current()
        if stop is not None and stop.requested:
            chunk = self.s.chunks[outputs['chunk']]
            if chunk.part == chunk.parts - 1 or stop.count > 1:  # the block is complete (or a second signal)
                raise MappingStopped(stop.signum or 15)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Stop the thread; record that this process failed (so rank 0 does not wait for it)."""
        self.stop()
        try:
            self.s.state.mark_rank(self.rank, 'failed', {'error': f'{type(exception).__name__}: {exception}'})
        except Exception:
            pass

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        """Start the writer thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name='sam_cffnet-map-writer', daemon=True)
            self.thread.start()

    def put(self, outputs: dict[str, Any]) -> None:
        """Queue one chunk's output."""
        self._raise()
        while True:
            try:
                self.queue.put(outputs, timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
        for future in self.assemblies:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        if self.thread is not None and not self.thread.is_alive():
            raise RuntimeError('the map writer thread stopped')

    def stop(self) -> None:
        """Stop the threads without raising (an assembly under way is completed, queued ones are dropped)."""
        if self.thread is not None and self.thread.is_alive():
            while self.thread.is_alive():
                try:
                    self.queue.put(_Stop(), timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.thread.join()
        self.assembler.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> dict[str, float]:
        """Write what is queued, assemble, stop; returns this process's counts (raises the threads' errors)."""
        if self.thread is not None and self.thread.is_alive():
            while True:
                try:
                    self.queue.put(_Stop(), timeout=0.5)
                    break
                except queue.Full:
                    if not self.thread.is_alive():
                        break
            self.thread.join()
        if self.error is not None:
            self.stop()
            raise self.error
        for future in self.assemblies:
            future.result()  # raises an assembly's error
        self.stop()
        self.s.state.write_progress(self.rank, self.done)
        return dict(self.counts)

    def _loop(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, _Stop):
                    return
                self._handle(item)
        except BaseException as err:
            self.error = err

    def _handle(self, out: dict[str, Any]) -> None:
        chunk = self.s.chunks[out['chunk']]
        key = (chunk.scene, chunk.block)
        self.done += len(chunk.windows)
        if out['error']:
            self.s.state.mark_failed(chunk.scene, out['error'])
        failed = out['skip'] or out['error'] or self.s.state.failed(chunk.scene) is not None
        if failed:
            self.blenders.pop(key, None)
            self.block_counts.pop(key, None)
        else:
            block = self.s.blocks[chunk.scene][chunk.block]
            blender = self.blenders.get(key)
            if blender is None:
                blender = self.blenders[key] = BlockBlender(block, self.s.tile, self.s.overlap)
                self.block_counts[key] = {'windows': 0, 'windows_skipped': 0, 'model_seconds': 0.0}
            blender.add(out['probability'], [chunk.windows[k] for k in out['keep']])
            counts = self.block_counts[key]
            counts['windows'] += len(out['keep'])
            counts['windows_skipped'] += len(chunk.windows) - len(out['keep'])
            counts['model_seconds'] += out['seconds']
            if chunk.part == chunk.parts - 1:
                self._write(block, self.blenders.pop(key), self.block_counts.pop(key))
        now = time.monotonic()
        if now - self._last_progress > 0.5:
            self.s.state.write_progress(self.rank, self.done)
            self._last_progress = now

    def _write(self, block: Block, blender: BlockBlender, counts: dict[str, float]) -> None:
        s = self.s
        result = blender.result(s.threshold)
        folder = s.state.block_dir(block.scene)
        scene = s.scenes[block.scene]
        if s.polygons:
            interior, seam = split_at_seams(
                mask_polygons(result.mask == 1, block.y0, block.x0), block, scene.height, scene.width
            )
            save_block_polygons(folder / f'{block.name}.npz', interior, seam)
        bands = ([result.probability] if s.write_probability else []) + ([result.mask] if s.write_mask else [])
        tags = {**counts, 'valid_pixels': result.valid_pixels, 'landslide_pixels': result.landslide_pixels,
                'rank': self.rank}  # fmt: skip
        write_block(folder / f'{block.name}.tif', scene, block, bands, tags)
        files = [folder / f'{block.name}.tif', *([folder / f'{block.name}.npz'] if s.polygons else [])]
        s.state.record_block(block, files)  # last: the block counts as finished from here on
        for k in ('windows', 'windows_skipped', 'model_seconds'):
            self.counts[k] += counts[k]
        self.counts['blocks'] += 1
        s.remaining[block.scene] = s.remaining.get(block.scene, 1) - 1
        # this process's last block of the scene: all of it may be done (the last writer always sees every record)
        if s.remaining[block.scene] <= 0 and len(s.state.done_blocks(block.scene)) == len(s.blocks[block.scene]):
            # assembled on its own thread: a long COG build does not hold up the blocks (nor the device)
            self.assemblies.append(self.assembler.submit(s.on_scene_complete, block.scene))


class ProgressBar:
    """A tqdm bar over the windows of all processes (rank 0), fed from the state folder.

    Args:
        state: the run state.
        total: windows to do in this attempt, all processes together.
        description: the bar's label.
        enabled: show it.
    """

    def __init__(self, state: RunState, total: int, description: str, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.state = state
        self.bar = tqdm(total=total, unit='win', desc=description, disable=not enabled, dynamic_ncols=True,
                        smoothing=0.1)  # fmt: skip
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name='sam_cffnet-map-progress', daemon=True)
        if enabled and total:
            self.thread.start()

    def _update(self) -> None:
        done = min(self.state.read_progress(), self.bar.total)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._update()

    def close(self) -> None:
        """Final update and close (once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self._update()
        self.bar.close()
