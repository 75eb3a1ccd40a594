"""Patches: periodic wrap on periodic axes only, complete tiling, gathers stay differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from climgen.data.patches import extract_patches, patch_offsets, random_patch
from climgen.errors import ClimgenInputError


def _reference(x, i, j, h, w):
    """Patch by rolling: row i, column j moved to the origin, then cropped."""
    return torch.roll(x, shifts=(-i, -j), dims=(-2, -1))[..., :h, :w]


def test_random_patch_equals_rolled_crop_and_wraps():
    x = torch.arange(2 * 6 * 10, dtype=torch.float64).reshape(2, 6, 10)
    rng = np.random.default_rng(3)
    seen_wrap = False
    for _ in range(50):
        p, (i, j) = random_patch(x, (3, 7), rng, periodic_x=True, return_offset=True)
        assert 0 <= i <= 3 and 0 <= j < 10
        seen_wrap |= j + 7 > 10
        torch.testing.assert_close(p, _reference(x, i, j, 3, 7))
    assert seen_wrap
    gen = torch.Generator().manual_seed(0)
    assert random_patch(x, 4, gen, periodic_x=True, periodic_y=True).shape == (2, 4, 4)


def test_patch_larger_than_bounded_axis_is_an_error():
    x = torch.zeros(1, 6, 10)
    with pytest.raises(ClimgenInputError, match="width 11.*non-periodic width axis of size 10"):
        random_patch(x, (2, 11), 0)
    with pytest.raises(ClimgenInputError, match="height 7.*non-periodic height axis of size 6"):
        extract_patches(x, (7, 2), periodic_x=True)
    assert random_patch(x, (2, 11), 0, periodic_x=True).shape == (1, 2, 11)  # wraps


def test_extract_patches_match_reference_and_cover_every_point():
    x = torch.randn(3, 7, 10, dtype=torch.float64)
    patches, offsets = extract_patches(x, (3, 4), periodic_x=True, return_offsets=True)
    rows, cols = patch_offsets((7, 10), (3, 4), periodic_x=True)
    assert rows == [0, 3, 4] and cols == [0, 4, 8]  # last row flush with the wall; x wraps
    assert patches.shape == (9, 3, 3, 4)
    covered = torch.zeros(7, 10, dtype=torch.bool)
    for p, (i, j) in zip(patches, offsets, strict=True):
        torch.testing.assert_close(p, _reference(x, i, j, 3, 4))
        covered[(torch.arange(3) + i)[:, None], (torch.arange(4) + j) % 10] = True
    assert covered.all()


def test_strided_patches_and_gradients():
    x = torch.randn(2, 8, 8, dtype=torch.float64, requires_grad=True)
    patches = extract_patches(x, 4, stride=2)
    assert patches.shape == (9, 2, 4, 4)
    patches.sum().backward()
    # each interior point lies in more patches than a corner
    assert x.grad[0, 3, 3] == 4 and x.grad[0, 0, 0] == 1
