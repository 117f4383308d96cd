"""Image grids: layout, quantisation and padding."""

import numpy as np

from asm_tf import summaries


def test_image_grid_places_each_tile_row_by_row_with_grey_padding():
    images = np.stack([np.full((2, 3, 1), k / 4) for k in range(5)])  # five 2x3 tiles of values 0 .. 1
    grid = summaries.image_grid(images, columns=3, padding=1)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2, 1) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 4, 0] == 64 and grid[0, 8, 0] == 128 and grid[3, 0, 0] == 191
    assert grid[3, 4, 0] == 255  # the fifth tile opens the second row, in its second column
    assert grid[2, 0, 0] == grid[0, 3, 0] == 128  # padding row and column
    assert (grid[3:, 8:, 0] == 128).all()  # no sixth tile: background
    unpadded = summaries.image_grid(images, columns=3)
    assert unpadded.shape == (4, 9, 1) and unpadded[2, 3, 0] == 255 and unpadded[2, 6, 0] == 0
