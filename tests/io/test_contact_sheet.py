"""The shared contact-sheet layout: tile placement, scaling, captions."""

import numpy as np
import pytest
import torch

from dmtrec.io.contact_sheet import CAPTION, MARGIN, contact_sheet


def _flat(value: float, h: int = 4, w: int = 6) -> torch.Tensor:
    return torch.full((h, w, 3), value)


def test_uncaptioned_tiles_abut_row_major_and_leave_the_rest_white():
    sheet = np.asarray(contact_sheet([_flat(0.0), _flat(0.2), _flat(0.4)], columns=2))
    assert sheet.shape == (8, 12, 3)
    assert (sheet[:4, :6] == 0).all() and (sheet[:4, 6:] == 51).all()  # 0.2 * 255
    assert (sheet[4:, :6] == 102).all()  # third tile starts the second row
    assert (sheet[4:, 6:] == 255).all()  # no fourth tile: white


def test_tiles_scale_to_the_height_keeping_their_aspect():
    tile = torch.zeros(2, 3, 3)
    tile[0, 0] = 1.0  # the top-left pixel, which nearest-neighbour scaling makes a 4x4 block
    sheet = np.asarray(contact_sheet([tile], columns=1, tile_height=8))
    assert sheet.shape == (8, 12, 3)
    assert (sheet[:4, :4] == 255).all() and (sheet[4:, :] == 0).all() and (sheet[:, 4:] == 0).all()


def test_captions_sit_above_their_tiles():
    sheet = np.asarray(contact_sheet([_flat(0.0, 20, 20), _flat(0.0, 20, 20)], columns=2, captions=["ab", "cd"]))
    cell_w, cell_h = 20 + 2 * MARGIN, 20 + CAPTION + 2
    assert sheet.shape == (cell_h, 2 * cell_w, 3)
    for x in (MARGIN, cell_w + MARGIN):
        assert (sheet[CAPTION : CAPTION + 20, x : x + 20] == 0).all()
        band = sheet[:CAPTION, x : x + 20]
        assert (band < 128).any() and (band == 255).mean() > 0.5  # dark text on white


def test_no_tiles_is_an_error():
    with pytest.raises(ValueError, match="no tiles"):
        contact_sheet([], columns=2)
