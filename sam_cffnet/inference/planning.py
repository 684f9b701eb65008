"""Planning a mapping run before any work (:class:`~.runner.MappingRun` runs the plan).

Its outputs checked, the bands, windows and blocks of every scene, and the blocks still to do.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError, OutputExistsError
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule
from .assemble import SceneOutputs
from .params import MapParams
from .polygons import POLYGON_FORMATS, vector_driver
from .raster import InputRasterError, SceneInfo, check_scene_dtype, scene_bands
from .state import RunState
from .windows import Block, ScenePlan

__all__ = ['Plan', 'check_existing', 'plan_run', 'scene_outputs', 'unfinished_blocks']


@dataclass
class Plan:
    """The plan of a run: the pipeline, the decision rule, windows and the bands and blocks of every scene."""

    pre: Preprocessing
    rule: ThresholdRule
    tile: int
    overlap: int
    bands: list[tuple[list[int], list[int]]]
    plans: list[ScenePlan]
    blocks: list[Sequence[Block]] = field(default_factory=list)


def scene_outputs(p: MapParams, scenes: Sequence[SceneInfo]) -> list[SceneOutputs]:
    """The output files of every scene (checked: formats, names, not an input, not a folder).

    Args:
        p: the run's settings.
        scenes: the input scenes.

    Returns:
        One :class:`~.assemble.SceneOutputs` per scene.

    Raises:
        ConfigError: an impossible output.
    """
    poly = p.polygons
    if poly is not None and poly.lower() not in POLYGON_FORMATS:
        vector_driver(poly)
        if p.output is None:
            raise ConfigError(
                f'--polygons {poly}: with --output-dir give a format, gpkg or geojson (one file per scene)'
            )
    if p.output is not None:
        if len(scenes) != 1:
            raise ConfigError(f'--output names one file but --input gives {len(scenes)} scenes; use --output-dir')
        raster = Path(p.output).resolve()  # relative or absolute: one run, one state folder
        if raster.suffix.lower() not in ('.tif', '.tiff'):
            raise ConfigError(f'--output {raster}: the output is a GeoTIFF (COG), name it .tif')
        polygons = None
        if poly is not None:
            polygons = raster.with_suffix(POLYGON_FORMATS[poly.lower()]) if poly.lower() in POLYGON_FORMATS \
                else Path(poly).resolve()  # fmt: skip
        outputs = [
            SceneOutputs(
                raster,
                polygons,
                raster.with_name(raster.stem + '.summary.json'),
                raster.with_name(raster.stem + '.quicklook.png') if p.quicklook else None,
            )
        ]
    else:
        folder = Path(p.output_dir).resolve()  # type: ignore[arg-type]
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f'--output-dir {folder} is a file, expected a folder')
        outputs, owners = [], {}
        for s in scenes:
            stem = Path(s.path).stem
            if stem in owners:
                raise ConfigError(
                    f'{owners[stem]} and {s.path} would both write {folder / stem}.tif; rename one, or map them '
                    f'in separate runs'
                )
            owners[stem] = s.path
            polygons = folder / f'{stem}{POLYGON_FORMATS[poly.lower()]}' if poly is not None else None
            outputs.append(
                SceneOutputs(
                    folder / f'{stem}.tif',
                    polygons,
                    folder / f'{stem}.summary.json',
                    folder / f'{stem}.quicklook.png' if p.quicklook else None,
                )
            )
    inputs = {Path(s.path).resolve() for s in scenes}
    for o in outputs:
        for path in o.paths():
            if path.resolve() in inputs:
                raise ConfigError(f'the output {path} is an input scene')
            if path.is_dir():
                raise ConfigError(f'the output {path} is a folder, expected a file path')
    return outputs


def check_existing(
    p: MapParams,
    state: RunState,
    fingerprint: dict[str, Any],
    scenes: Sequence[SceneInfo],
    outputs: Sequence[SceneOutputs],
) -> None:
    """Refuse existing outputs and another run's state (read-only: every process checks the same).

    Raises:
        OutputExistsError: an output exists (without ``overwrite``, and not this very run's).
    """
    matching = False
    if state.exists():
        diff = state.difference(fingerprint)
        matching = diff is None
        if not matching and not p.overwrite:
            raise OutputExistsError(
                f'{state.root} holds the state of another mapping run ({diff}); pass --overwrite to discard '
                f'it and start afresh, or choose another output'
            )
    all_final = matching and all(state.final(s.index) is not None for s in scenes)
    for scene, these in zip(scenes, outputs, strict=True):
        ours = matching and state.final(scene.index) is not None
        for path in these.paths():
            if path.exists() and not (p.overwrite or ours):
                raise OutputExistsError(f'{path} exists; pass --overwrite to replace it')
    if p.mosaic is not None and Path(p.mosaic).exists() and not (p.overwrite or all_final):
        raise OutputExistsError(f'{p.mosaic} exists; pass --overwrite to replace it')


def plan_run(
    p: MapParams,
    scenes: Sequence[SceneInfo],
    preprocessing: Preprocessing | dict[str, Any],
    rule: ThresholdRule,
    model: nn.Module | None = None,
) -> Plan:
    """Bands, windows and blocks of every scene, from the model's pipeline (see :meth:`MappingRun.configure`).

    Raises:
        ConfigError: impossible tile size / overlap.
        InputRasterError: a scene's bands or data type do not fit the pipeline.
    """
    pre = Preprocessing.from_dict(preprocessing)
    tile = int(p.tile_size or pre.tile_size or 256)
    overlap = tile // 4 if p.overlap is None else int(p.overlap)
    if not 0 <= overlap < tile:
        raise ConfigError(f'need 0 <= overlap < tile_size, got overlap {overlap} and tile size {tile}')
    if p.threshold is not None:
        rule = ThresholdRule(float(p.threshold))
    net = getattr(model, 'model', model)
    model_in = getattr(net, 'in_channels', None)
    if isinstance(model_in, int) and model_in != pre.num_channels:
        raise InputRasterError(
            f'the model takes {model_in} bands but the preprocessing delivers {pre.num_channels}; wrong preprocessing?'
        )
    bands = [scene_bands(s, pre) for s in scenes]
    for scene, (spectral, _) in zip(scenes, bands, strict=True):
        check_scene_dtype(scene, spectral, pre)  # before any window: a uint16 scene through a uint8 pipeline
    plans = [ScenePlan(s.height, s.width, tile, overlap, p.block_size) for s in scenes]
    return Plan(pre.with_tile_size(tile), rule, tile, overlap, bands, plans,
                [plan.blocks(i) for i, plan in enumerate(plans)])  # fmt: skip


def unfinished_blocks(
    state: RunState, scenes: Sequence[SceneInfo], plan: Plan, batch: int
) -> tuple[array[int], array[int], array[int], array[int], int]:
    """The blocks still to do, in order: their scene, their index, their chunks of ``batch`` windows and their cost.

    Returns:
        ``(scenes, blocks, chunks, windows, blocks already done)``: compact arrays (one entry per block to do).
    """
    todo_scene, todo_block, todo_chunks, costs = array('i'), array('q'), array('q'), array('q')
    resumed = 0
    for scene in scenes:
        if state.done(scene.index) is not None:
            continue
        done = state.done_blocks(scene.index)
        for index, block in enumerate(plan.blocks[scene.index]):
            if block.name in done:
                resumed += 1
            else:
                todo_scene.append(scene.index)
                todo_block.append(index)
                todo_chunks.append(block.num_chunks(batch))
                costs.append(block.num_windows)
    return todo_scene, todo_block, todo_chunks, costs, resumed
