"""Tile-grid maths and overlap blending, shared by the trainer and the server.

A scene too large for a model is cut into overlapping ``tile`` x ``tile`` tiles
on a regular grid (:mod:`forja_tiles.grid`), and each output pixel is the
weighted average of every tile output that covered it (:mod:`forja_tiles.blend`).
:class:`RowBlender` does that average one band of rows at a time: rows no later
tile can touch are finished and handed back, so memory is a tile's height of the
scene's width, never the scene.

A package of its own, numpy only: the trainer image (``forja_trainer.geo.tiled``)
and the server image (``forja_server.geotiff``) both copy it, and it imports
neither (``.importlinter``).
"""

from forja_tiles.blend import WINDOW_FLOOR, RowBlender, blend_window
from forja_tiles.grid import grid_starts, stride_for, tile_count, window_origins

__all__ = [
    "WINDOW_FLOOR",
    "RowBlender",
    "blend_window",
    "grid_starts",
    "stride_for",
    "tile_count",
    "window_origins",
]
