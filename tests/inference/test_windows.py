"""Window planning and blending alone (pure numpy: no file, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from sam_cffnet.inference.windows import (
    NODATA,
    PROBABILITY_SCALE,
    BlockBlender,
    ScenePlan,
    balanced_split,
    encode_probability,
    window_weight,
)


def test_window_weight_positive_and_complementary() -> None:
    w = window_weight(64, 16)
    assert w.shape == (64, 64) and w.min() > 0 and w.max() == 1
    row = w[32]
    np.testing.assert_allclose(row[48:] + row[:16], 1.0, atol=1e-6)  # neighbours 48 px apart sum to 1
    assert (window_weight(8, 0) == 1).all()


@pytest.mark.parametrize(('height', 'width', 'block'), [(150, 200, 96), (40, 50, 96), (300, 130, 48), (64, 64, 10)])
def test_blocks_partition_the_scene_and_hold_exactly_the_windows_touching_them(
    height: int, width: int, block: int
) -> None:
    plan = ScenePlan(height, width, tile=64, overlap=16, block_size=block)
    owner = np.zeros((height, width), int)
    for b in plan.blocks():
        owner[b.y0 : b.y1, b.x0 : b.x1] += 1
        touching = [(r, c) for r in plan.rows for c in plan.cols
                    if r < b.y1 and r + 64 > b.y0 and c < b.x1 and c + 64 > b.x0]  # fmt: skip
        assert list(b.windows) == touching  # row-major, nothing missing, nothing extra
        covered = np.zeros(b.shape, bool)
        for r, c in b.windows:
            covered[max(r, b.y0) - b.y0 : min(r + 64, b.y1) - b.y0, max(c, b.x0) - b.x0 : min(c + 64, b.x1) - b.x0] = 1
        assert covered.all()
        chunks = b.chunks(3)
        assert all(1 <= len(ch) <= 3 for ch in chunks) and sum(chunks, ()) == b.windows
    assert (owner == 1).all()  # every pixel in exactly one block
    assert plan.num_windows == len(plan.rows) * len(plan.cols)
    assert plan.num_predicted_windows >= plan.num_windows


def _whole_scene_blend(height: int, width: int, probs: dict, tile: int, overlap: int) -> tuple[np.ndarray, ...]:
    """Reference: blend every window over the whole scene at once (row-major order, float32 sums)."""
    weight = window_weight(tile, overlap)
    acc = np.zeros((height + tile, width + tile), np.float32)
    wsum = np.zeros_like(acc)
    valid = np.zeros(acc.shape, bool)
    for (r, c), p in probs.items():
        ok = np.isfinite(p)
        w = np.where(ok, weight, np.float32(0))
        acc[r : r + tile, c : c + tile] += np.where(ok, p, np.float32(0)) * w
        wsum[r : r + tile, c : c + tile] += w
        valid[r : r + tile, c : c + tile] |= ok
    acc, wsum, valid = acc[:height, :width], wsum[:height, :width], valid[:height, :width]
    nodata = ~valid
    prob = np.divide(acc, wsum, out=np.zeros_like(acc), where=~nodata)
    mask = ((prob > 0.5) & ~nodata).astype(np.uint8)
    mask[nodata] = NODATA
    return encode_probability(prob, nodata), mask


@pytest.mark.parametrize('block', [40, 96, 10_000])
def test_blocks_blend_exactly_like_the_whole_scene(block: int) -> None:
    """Assembling the blocks gives, bit for bit, the blend of the whole scene: the sums per pixel are the same."""
    height, width, tile, overlap = 150, 200, 64, 16
    plan = ScenePlan(height, width, tile, overlap, block)
    rng = np.random.default_rng(0)
    probs = {}
    for r in plan.rows:
        for c in plan.cols:
            p = rng.random((tile, tile), dtype=np.float32)
            p[: rng.integers(0, 20), : rng.integers(0, 30)] = np.nan  # nodata corners
            probs[(r, c)] = p
    probs[(plan.rows[1], plan.cols[1])][:] = np.nan  # a window entirely nodata
    expected_p, expected_m = _whole_scene_blend(height, width, probs, tile, overlap)
    got_p = np.full((height, width), 7, np.uint8)
    got_m = np.full((height, width), 7, np.uint8)
    for b in plan.blocks():
        blender = BlockBlender(b, tile, overlap)
        for chunk in b.chunks(3):
            blender.add(np.stack([probs[w] for w in chunk]), chunk)
        result = blender.result(0.5)
        got_p[b.y0 : b.y1, b.x0 : b.x1] = result.probability
        got_m[b.y0 : b.y1, b.x0 : b.x1] = result.mask
        assert result.valid_pixels == int((result.mask != NODATA).sum())
        assert result.landslide_pixels == int((result.mask == 1).sum())
    np.testing.assert_array_equal(got_p, expected_p)
    np.testing.assert_array_equal(got_m, expected_m)
    assert (got_p[got_m == NODATA] == NODATA).all() and (got_p[got_m != NODATA] <= PROBABILITY_SCALE).all()


def test_constant_probability_blends_to_itself() -> None:
    plan = ScenePlan(100, 130, 32, 8, 50)
    for b in plan.blocks():
        blender = BlockBlender(b, 32, 8)
        blender.add(np.full((len(b.windows), 32, 32), 0.3, np.float32), b.windows)
        result = blender.result(0.5)
        assert (result.probability == round(0.3 * PROBABILITY_SCALE)).all() and (result.mask == 0).all()


@pytest.mark.parametrize('parts', [1, 2, 3, 7])
def test_balanced_split_is_contiguous_complete_and_balanced(parts: int) -> None:
    costs = [int(c) for c in np.random.default_rng(parts).integers(1, 50, 23)]
    ranges = balanced_split(costs, parts)
    assert len(ranges) == parts
    assert [i for r in ranges for i in r] == list(range(len(costs)))  # each item once, in order
    loads = [sum(costs[i] for i in r) for r in ranges]
    assert max(loads) <= sum(costs) / parts + max(costs)
    assert balanced_split([1, 1], 4)[1:] == [range(1, 1), range(1, 2), range(2, 2)]
