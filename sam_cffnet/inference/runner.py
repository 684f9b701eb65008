"""The mapping run: from input scenes and a model to COGs, polygons and summaries, on Lightning's Trainer.

A :class:`MappingRun` goes through three steps:

1. **checks, before any model is loaded** (:meth:`MappingRun.__init__`): inputs (files, globs, VRTs) exist and are
   rasters, outputs are not inputs and do not exist (unless ``overwrite``, or they are this very run's, being
   resumed), a state folder of another run is refused, polygon formats and mosaics fit the scenes;
2. **planning, before any work** (:meth:`MappingRun.configure`): the checkpoint's pipeline says which bands of each
   scene feed the model (scenes may differ in band count and CRS: each is handled on its own), windows and blocks;
3. **execution** (:meth:`MappingRun.execute`): ``Trainer.predict`` with a :class:`~.model.MappingModule`, a
   :class:`~.data.MappingDataModule` and a :class:`~.writer.BlockWriter`. Every process takes a contiguous share
   of the unfinished blocks; blocks already in the state folder are not redone; each scene is assembled when its
   last block is written, and rank 0 prints the summary and, when everything is complete, removes the state.

:func:`map_scenes` and :func:`map_scene` are the Python entry points; ``python -m sam_cffnet map`` is
:mod:`.cli`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError, OutputExistsError, SAMCFFNetError
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule
from .assemble import (
    apply_moves,
    assemble_scene,
    check_mosaic,
    output_bands,
    summary_table,
    write_mosaic,
)
from .data import Chunk, ChunkDataset, ChunkIndex, MappingDataModule
from .model import MappingModel, MappingModule, set_attention, unpack_model
from .params import MapParams, model_identity, precision_name, resolve_inputs
from .planning import Plan, check_existing, plan_run, scene_outputs, unfinished_blocks
from .polygons import check_polygon_output
from .quicklook import rgb_band_indexes
from .raster import OutputWriteError, inspect_scene
from .signals import MappingStopped, StopSignals
from .state import RunState, first_difference
from .windows import PROBABILITY_SCALE, balanced_split
from .writer import BlockWriter, ProgressBar, WriterSettings

__all__ = ['FORCED_TRAINER_OPTIONS', 'MapParams', 'MappingRun', 'MappingStopped', 'map_scene', 'map_scenes']

PathLike = str | os.PathLike[str]

#: Trainer options ``map`` always sets: no logs, checkpoints or Lightning bar (ours counts all processes), and
#: no distributed sampler (the run gives each process its blocks).
FORCED_TRAINER_OPTIONS: dict[str, Any] = {
    'logger': False,
    'enable_checkpointing': False,
    'enable_progress_bar': False,
    'enable_model_summary': False,
    'use_distributed_sampler': False,
}


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    import signal

    return signal.Signals(signum).name


def lock_owner() -> bool:
    """Whether this process is the first of its run (global rank 0 by the launchers' variables): it holds the lock.

    Lightning's launcher starts the other processes of a run with ``LOCAL_RANK``/``NODE_RANK`` set; ``srun`` sets
    ``SLURM_PROCID``; ``torchrun`` sets ``RANK``.
    """
    names = ('RANK', 'LOCAL_RANK', 'NODE_RANK', 'GROUP_RANK', 'SLURM_PROCID')
    return all(int(os.environ.get(name) or 0) == 0 for name in names)


def _warn(message: str) -> None:
    print(f'sam_cffnet map: warning: {message}', file=sys.stderr, flush=True)


class MappingRun:
    """One mapping run (see the module docstring).

    Args:
        params: the settings.
        model: identity of the model (:func:`model_identity`, or the checkpoint files' :func:`file_identity`),
            recorded so that a rerun resumes only with the same model.
        trainer: Trainer options (``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``, ...).

    Raises:
        ConfigError / MissingFileError / InputRasterError / OutputExistsError: before any model is loaded.
    """

    def __init__(self, params: MapParams, model: dict[str, Any], trainer: dict[str, Any] | None = None) -> None:
        params.validate()
        self.params = params
        self.trainer_options = dict(trainer or {})
        self.scenes = [inspect_scene(p, i) for i, p in enumerate(resolve_inputs(params.inputs))]
        self.outputs = scene_outputs(params, self.scenes)
        if params.output is not None:
            out = self.outputs[0].raster
            self.state = RunState(out.parent / f'.{out.name}.map-state')
        else:
            self.state = RunState(Path(params.output_dir).resolve() / '.map-state')  # type: ignore[arg-type]
        for scene, outputs in zip(self.scenes, self.outputs, strict=True):
            if outputs.polygons is not None:
                check_polygon_output(outputs.polygons, scene.path, scene.crs_wkt is not None)
        if params.mosaic is not None:
            check_mosaic(self.scenes)
        self.fingerprint = {
            'format': 1,
            'tool': 'sam_cffnet map',
            'model': model,
            'scenes': [s.identity() for s in self.scenes],
            'outputs': [[str(p) for p in o.paths()] for o in self.outputs],
            'mosaic': str(Path(params.mosaic).resolve()) if params.mosaic is not None else None,
            'settings': {**params.settings(), 'precision': precision_name(self.trainer_options)},
        }
        #: the summaries of this very run when a previous process completed it (its state was being removed)
        self.complete: list[dict[str, Any]] | None = None
        self.owner = lock_owner()
        what = str(self.outputs[0].raster if params.output is not None else Path(params.output_dir).resolve())  # type: ignore[arg-type]
        if self.owner:  # another run on the same output is refused here, before any model is loaded
            self.state.acquire(what)
        try:
            completed = self.state.completed()
            if completed is not None and self.owner:
                if first_difference(completed.get('fingerprint'), json.loads(json.dumps(self.fingerprint))) is None:
                    self.complete = list(completed.get('summaries') or [])
                self.state.finish()  # a completed run killed while removing its state: finish the clean-up
                if self.complete is None:
                    self.state.acquire(what)
            if self.complete is None:
                check_existing(self.params, self.state, self.fingerprint, self.scenes, self.outputs)
        except BaseException:
            self.release()
            raise
        self.plan: Plan | None = None
        self.chunks: Sequence[Chunk] = []
        self.writer: BlockWriter | None = None
        self.progress: ProgressBar | None = None
        self.started = time.perf_counter()
        self.resumed_blocks = 0

    def release(self) -> None:
        """Drop the lock of the state folder (the finished blocks stay for a rerun)."""
        if self.owner:
            self.state.release()

    # ------------------------------------------------------------------ step 2: planning
    def configure(self, preprocessing: Preprocessing, rule: ThresholdRule, model: nn.Module | None = None) -> None:
        """Bands, windows and blocks of every scene, from the model's pipeline (errors before any work).

        Planning is lazy: blocks and windows are made when used, so its time and memory do not grow with the scenes.

        Raises:
            ConfigError: impossible tile size / overlap.
            InputRasterError: a scene's bands fit neither the trained bands nor the dataset's band list, or its data
                type is not the training imagery's.
        """
        self.plan = plan_run(self.params, self.scenes, preprocessing, rule, model)

    # ------------------------------------------------------------------ step 3: execution
    def trainer_kwargs(self) -> dict[str, Any]:
        """The Trainer's arguments: the user's options, then :data:`FORCED_TRAINER_OPTIONS` and our writer."""
        kwargs = {'accelerator': 'auto', 'devices': 1, **self.trainer_options, **FORCED_TRAINER_OPTIONS}
        callbacks = kwargs.get('callbacks') or []
        callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]
        kwargs['callbacks'] = [self.writer, *callbacks]
        return kwargs

    def execute(
        self,
        model: nn.Module,
        preprocessing: Preprocessing | None = None,
        rule: ThresholdRule | None = None,
    ) -> list[dict[str, Any]]:
        """Map every scene with ``Trainer.predict``.

        Args:
            model: a :class:`~sam_cffnet.tasks.SegmentationTask` or a model (then ``preprocessing`` is needed).
            preprocessing: the input pipeline (default: the task's, from its checkpoint).
            rule: the decision rule (default: the task's; ``params.threshold`` overrides).

        Returns:
            On rank 0, the summary of every scene; ``[]`` on the other processes.

        Raises:
            DataError: scenes failed (named, with the reason); the others are complete.
            MappingStopped: SIGTERM or SIGINT (the block under way is finished first; rerun to resume).
        """
        if self.complete is not None:
            print(f'sam_cffnet map: {", ".join(str(o.raster) for o in self.outputs)}: already complete (a previous '
                  f'run of this command finished them; its state folder is removed)', file=sys.stderr)  # fmt: skip
            if self.complete:
                print(summary_table(self.complete), flush=True)
            return self.complete
        try:
            with StopSignals():
                return self._execute(model, preprocessing, rule)
        finally:
            self.release()

    def _execute(
        self, model: nn.Module, preprocessing: Preprocessing | None, rule: ThresholdRule | None
    ) -> list[dict[str, Any]]:
        import rasterio
        from lightning.pytorch import Trainer

        pre = preprocessing if preprocessing is not None else getattr(model, 'preprocessing', None)
        if pre is None:
            raise ConfigError('no preprocessing: pass a SegmentationTask loaded from a checkpoint, or preprocessing=')
        rule = rule if rule is not None else getattr(model, 'threshold_rule', None) or ThresholdRule()
        self.configure(pre, rule, model)
        plan = self.plan
        assert plan is not None
        set_attention(model, self.params.attention)
        module = MappingModule(model, plan.pre, compile=self.params.compile, batch_size=self.params.batch_size)
        self.writer = BlockWriter(WriterSettings(
            state=self.state, scenes=self.scenes, blocks=plan.blocks, tile=plan.tile, overlap=plan.overlap,
            threshold=plan.rule.probability_threshold, write_probability=self.params.write_probability,
            write_mask=self.params.write_mask, polygons=any(o.polygons is not None for o in self.outputs),
            on_scene_complete=self._scene_complete,
        ))  # fmt: skip
        datamodule = MappingDataModule(self, num_workers=self.params.num_workers)
        quiet = logging.getLogger('lightning.pytorch.utilities.rank_zero')
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # no 'GPU available' lines nor logger tips for a tool that logs nothing
        try:
            trainer = Trainer(**self.trainer_kwargs())
        finally:
            quiet.setLevel(level)
        with rasterio.Env(GDAL_CACHEMAX=int(self.params.gdal_cache_mb)):
            try:
                trainer.predict(module, datamodule=datamodule, return_predictions=False)
                return self._finish(trainer)
            except MappingStopped as err:
                self.writer.stop()  # the block under way is written
                done = sum(len(self.state.done_blocks(s.index)) for s in self.scenes)
                total = sum(len(b) for b in plan.blocks)
                raise MappingStopped(
                    err.signum,
                    f'stopped by {signal_name(err.signum)}: {done} of {total} blocks are finished and kept in '
                    f'{self.state.root}; rerun the same command to resume',
                ) from None
            except OutputWriteError as err:
                raise OutputWriteError(
                    f'{err}; the finished blocks are kept in {self.state.root}: free space (or fix the cause) and '
                    f'rerun the same command to resume'
                ) from err
            finally:
                self.writer.stop()
                if self.progress is not None:
                    self.progress.close()
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.destroy_process_group()  # no waiting for peers at interpreter exit

    def setup_attempt(self, trainer: Any) -> Sequence[Chunk]:
        """Rank 0 prepares the state folder; then every process takes its share of the unfinished blocks."""
        plan = self.plan
        assert plan is not None and self.writer is not None
        rank, world = trainer.global_rank, trainer.world_size
        error: str | None = None
        if rank == 0:
            try:
                if self.state.exists() and self.state.difference(self.fingerprint) is not None:
                    if not self.params.overwrite:
                        raise OutputExistsError(f'{self.state.root} holds the state of another mapping run')
                    self.state.remove()
                self.state.create(self.fingerprint)
                self.state.start_attempt()
                for scene in self.scenes:
                    final = self.state.final(scene.index)
                    if final is not None and self.state.done(scene.index) is None:
                        apply_moves([tuple(m) for m in final['moves']])  # type: ignore[misc]
                        self.state.mark_done(scene.index, final['summary'])
                    if self.state.done(scene.index) is None:  # blocks that fail their record are done again
                        self.state.verify_blocks(scene.index, plan.blocks[scene.index], _warn)
            except SAMCFFNetError as err:
                error = f'{type(err).__name__}: {err}'
        error = trainer.strategy.broadcast(error, src=0)
        if error is not None:
            name, _, message = error.partition(': ')
            raise (OutputExistsError if name == 'OutputExistsError' else DataError)(message)
        stop = StopSignals.current()
        if stop is not None and stop.requested:
            raise MappingStopped(stop.signum or 15)
        self.started = time.perf_counter()
        batch = self.params.batch_size
        todo = unfinished_blocks(self.state, self.scenes, plan, batch)
        todo_scene, todo_block, todo_chunks, costs, self.resumed_blocks = todo
        share = balanced_split(costs, world)[rank]
        cut = slice(share.start, share.stop)
        chunks = ChunkIndex(plan.blocks, todo_scene[cut], todo_block[cut], todo_chunks[cut], batch)
        self.chunks = chunks
        self.writer.s.chunks = chunks
        self.writer.s.remaining = dict(chunks.blocks_per_scene())
        if rank == 0:
            total_blocks = sum(len(b) for b in plan.blocks)
            if self.resumed_blocks:
                print(f'sam_cffnet map: resuming {self.state.root}: {self.resumed_blocks} of {total_blocks} blocks '
                      f'already done', file=sys.stderr)  # fmt: skip
            names = ', '.join(s.name for s in self.scenes[:3]) + (' ...' if len(self.scenes) > 3 else '')
            self.progress = ProgressBar(self.state, sum(costs), f'mapping {names} ({world} process'
                                        f'{"es" if world > 1 else ""})', self.params.progress)  # fmt: skip
        return chunks

    def dataset(self, chunks: Sequence[Chunk]) -> ChunkDataset:
        """The dataset reading ``chunks``."""
        assert self.plan is not None
        return ChunkDataset(self.scenes, self.plan.bands, chunks, self.plan.tile, self.state.failed)

    def _assemble_settings(self) -> dict[str, Any]:
        plan = self.plan
        assert plan is not None
        return {
            'write_probability': self.params.write_probability,
            'write_mask': self.params.write_mask,
            'min_area': self.params.min_area,
            'rule': plan.rule.describe(),
            'tags': {
                'threshold': f'{plan.rule.probability_threshold:.6g}', 'rule': plan.rule.describe(),
                'tile_size': plan.tile, 'overlap': plan.overlap,
                'probability_encoding': f'round(p * {PROBABILITY_SCALE}), 255 = nodata',
                'mask_encoding': '1 = landslide, 0 = background, 255 = nodata', 'bands': ','.join(plan.pre.bands),
                'normalization': plan.pre.normalization, 'software': 'sam_cffnet map',
            },
        }  # fmt: skip

    def _assemble(self, scene: int) -> dict[str, Any]:
        assert self.plan is not None
        settings = self._assemble_settings()
        settings['tags'] = {**settings['tags'], 'source': self.scenes[scene].name}
        settings['rgb_bands'] = rgb_band_indexes(self.plan.bands[scene][0], self.plan.pre.rgb_indices)
        return assemble_scene(self.state, self.scenes[scene], self.plan.plans[scene], self.outputs[scene], settings,
                              self.started)  # fmt: skip

    def _scene_complete(self, scene: int) -> None:
        if self.state.failed(scene) is None and self.state.claim_finalization(scene):
            self._assemble(scene)

    def _finish(self, trainer: Any) -> list[dict[str, Any]]:
        """After ``Trainer.predict``: drain the writer; rank 0 waits for all, finishes, reports, cleans up."""
        assert self.writer is not None and self.plan is not None
        rank, world = trainer.global_rank, trainer.world_size
        try:
            counts = self.writer.finish()
        except BaseException as err:
            self.state.mark_rank(rank, 'failed', {'error': f'{type(err).__name__}: {err}'})
            if self.progress is not None:
                self.progress.close()
            raise
        self.state.mark_rank(rank, 'done', counts)
        if rank != 0:
            return []
        ranks = self.state.wait_for_ranks(world)
        if self.progress is not None:
            self.progress.close()
        summaries: list[dict[str, Any]] = []
        failures: dict[str, str] = {}
        for scene in self.scenes:
            i = scene.index
            summary = self.state.done(i)
            reason = self.state.failed(i)
            if summary is None and reason is None:
                missing = len(self.plan.blocks[i]) - len(self.state.done_blocks(i))
                if missing == 0:
                    (self.state.scene_dir(i) / 'finalizing').unlink(missing_ok=True)  # a claimant that failed
                    summary = self._assemble(i) if self.state.claim_finalization(i) else self.state.done(i)
                else:
                    reason = f'{missing} block(s) not done (a process failed; rerun the same command to resume)'
            if summary is not None:
                summaries.append(summary)
            else:
                failures[scene.path] = reason or 'not assembled'
        bad = {r: info for r, (status, info) in ranks.items() if status != 'done'}
        if summaries:
            print(summary_table(summaries), flush=True)
        if bad:
            raise RuntimeError(
                'mapping process(es) failed: '
                + '; '.join(f'rank {r}: {info.get("error")}' for r, info in bad.items())
                + f'; the finished blocks are kept in {self.state.root}: rerun the same command to resume'
            )
        if failures:
            raise DataError(
                f'{len(failures)} of {len(self.scenes)} scene(s) failed, the others are written: '
                + '; '.join(failures.values())
            )
        if self.params.mosaic is not None:
            bands = output_bands(self.params.write_probability, self.params.write_mask)
            rasters = [o.raster for o in self.outputs]
            mosaic = Path(self.params.mosaic).resolve()
            write_mosaic(mosaic, self.scenes, rasters, bands, self.state.root)
            print(f'mosaic: {mosaic}', flush=True)
        self.state.finish(self.fingerprint, summaries)  # complete.json first: a rerun finishes a killed clean-up
        return summaries


# ---------------------------------------------------------------------------------------------- entry points
def map_scenes(
    model: nn.Module | MappingModel,
    params: MapParams,
    preprocessing: Preprocessing | None = None,
    rule: ThresholdRule | None = None,
    trainer: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Map scenes with a model in memory (see :class:`MappingRun`).

    Args:
        model: what :func:`~sam_cffnet.inference.load_mapping_model` returns (a :class:`MappingModel`), a
            :class:`~sam_cffnet.tasks.SegmentationTask`, or a model taking ``input_keys`` (then pass ``preprocessing``).
        params: the run's settings.
        preprocessing: override of the task's input pipeline.
        rule: override of the task's decision rule.
        trainer: Trainer options (``{'accelerator': 'gpu', 'devices': 1, 'precision': 'bf16-mixed'}``); default one
            device.

    Returns:
        The scenes' summaries (rank 0).
    """
    model, preprocessing, rule = unpack_model(model, preprocessing, rule)
    run = MappingRun(params, model_identity(model, preprocessing, rule), trainer)
    return run.execute(model, preprocessing, rule)


def map_scene(
    model_or_task: nn.Module | MappingModel,
    input_path: PathLike,
    output_path: PathLike,
    *,
    preprocessing: Preprocessing | None = None,
    threshold: float | ThresholdRule | None = None,
    polygons_path: PathLike | None = None,
    device: str | None = None,
    precision: str = '32-true',
    **settings: Any,
) -> dict[str, Any]:
    """Map one scene on one device; returns its summary.

    Args:
        model_or_task: see :func:`map_scenes`.
        input_path: the scene.
        output_path: the output GeoTIFF.
        preprocessing: override of the task's input pipeline.
        threshold: a probability threshold or a :class:`~sam_cffnet.thresholds.ThresholdRule` (default: the
            task's rule).
        polygons_path: also write polygons there (``.gpkg``/``.geojson``).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'`` (default: a GPU when there is one).
        precision: Lightning precision (``'32-true'``, ``'bf16-mixed'``, ``'16-mixed'``).
        **settings: other :class:`MapParams` fields (``tile_size``, ``overlap``, ``batch_size``, ``block_size``,
            ``overwrite``, ``progress``, ``num_workers`` (default 0 here), ...).
    """
    rule = threshold if isinstance(threshold, ThresholdRule) else None
    if threshold is not None and rule is None:
        settings['threshold'] = float(threshold)  # type: ignore[arg-type]
    settings.setdefault('num_workers', 0)
    polygons = os.fspath(polygons_path) if polygons_path is not None else None
    params = MapParams(inputs=[input_path], output=output_path, polygons=polygons, **settings)
    trainer: dict[str, Any] = {'precision': precision, 'devices': 1}
    if device is not None:
        dev = torch.device(device)
        trainer['accelerator'] = 'gpu' if dev.type == 'cuda' else dev.type
        if dev.index is not None:
            trainer['devices'] = [dev.index]
    summaries = map_scenes(model_or_task, params, preprocessing, rule, trainer)
    return summaries[0]
