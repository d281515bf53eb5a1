"""The per-case QC montage, drawn with Pillow (no matplotlib: 17 axes and contour tracing cost ~1 s a case).

``qc/<patient_id>.png``: rows = the three channels (phases), plus an RGB row where the channels are shown as
red/green/blue — misregistered phases show as coloured fringes at edges; columns = a context view of the
selected slice (30 mm around the tumour) and every ROI setting's output image. The tumour outline is red
(its boundary pixels on the tile's grid), the kept ROI's outline dotted yellow on the RGB row. The title
names the case, the slice and the registration outcome (green: ok, orange: a phase fell back to identity);
below the tiles one line per moving phase gives the registration status, the metric before → after and the
transform (rotation °, translation mm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rccgrade.preprocess.registration import RegistrationResult
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import SliceImages, channel_plan, window

TILE = 160
"""Tile size (pixels)."""

_OK, _FLAG = (44, 160, 44), (255, 127, 14)
_RED, _YELLOW = (230, 20, 20), (255, 230, 0)


def _context_stack(
    vols: Mapping[str, np.ndarray], z: int, settings: PreprocessSettings
) -> tuple[np.ndarray, list[str]]:
    plan = channel_plan(list(vols), settings.missing_phases)
    nz = next(iter(vols.values())).shape[0]
    stack = np.stack(
        [
            window(vols[p][int(np.clip(z + off, 0, nz - 1))], settings.window_level, settings.window_width)
            for p, off in plan
        ]
    )
    labels = [p if off == 0 else f"{p}[{off:+d}]" for p, off in plan]
    return stack, labels


def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a 2-D boolean mask: in the mask with a 4-neighbour outside it (or on the edge)."""
    m = np.asarray(mask, dtype=bool)
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m & ~inner


def _fit(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = TILE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def tile(image: np.ndarray, tumour: np.ndarray | None, keep: np.ndarray | None = None) -> np.ndarray:
    """One ``TILE × TILE`` RGB uint8 tile: a grey (H, W) or RGB (3, H, W) image in [0, 1], scaled to fit
    (bilinear), letterboxed on white, with the tumour outline in red and the kept region's dotted yellow."""
    from PIL import Image

    rgb = image.ndim == 3
    h, w = _fit(image.shape[-2:])
    data = np.clip(np.moveaxis(image, 0, -1) if rgb else image, 0.0, 1.0)
    pic = Image.fromarray((data * 255.0 + 0.5).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    arr = np.asarray(pic.convert("RGB")).copy()

    def scaled(mask: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127

    if keep is not None and not np.asarray(keep).all():
        edge = outline(scaled(keep))
        yy, xx = np.nonzero(edge)
        dots = (yy + xx) % 4 < 2
        arr[yy[dots], xx[dots]] = _YELLOW
    if tumour is not None and np.asarray(tumour).any():
        arr[outline(scaled(tumour))] = _RED
    out = np.full((TILE, TILE, 3), 255, np.uint8)
    top, left = (TILE - h) // 2, (TILE - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def case_montage(
    patient_id: str,
    vols: Mapping[str, np.ndarray],
    tumour: np.ndarray,
    images: SliceImages,
    slice_indices: Sequence[int],
    registration: Sequence[RegistrationResult],
    settings: PreprocessSettings,
    path: Path,
) -> Path:
    """Write the QC montage of one case (first selected slice); see the module docstring."""
    from PIL import Image, ImageDraw, ImageFont

    z = images.slice_indices[0]
    context, labels = _context_stack(vols, z, settings)
    rois = list(images.arrays)
    columns = [("context", context, tumour[z], None)] + [
        (roi, images.arrays[roi][0], images.tumour_masks[roi][0], images.keep_masks[roi][0]) for roi in rois
    ]
    gap, left, top = 6, 28, 48
    lines = [r.summary().replace("→", "->") for r in registration] or ["single phase: nothing to register"]
    width = left + len(columns) * (TILE + gap) + 10
    height = top + 4 * (TILE + gap) + 16 * len(lines) + 14
    canvas = Image.new("RGB", (max(width, 560), height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    small = ImageFont.load_default(size=11)
    flags = [r for r in registration if r.flagged]
    # Pillow's built-in font has no dash or arrow glyphs: plain ASCII separators
    title = f"{patient_id} | slice {slice_indices[0]} ({len(slice_indices)} selected) | " + (
        "registration fallback: " + ", ".join(f"{r.phase} {r.status}" for r in flags) if flags else "registration ok"
    )
    draw.text((left, 8), title, fill=_FLAG if flags else _OK, font=font)
    row_names = [*labels[:3], "RGB"]
    for row, name in enumerate(row_names):
        y = top + row * (TILE + gap)
        label = Image.new("RGB", (TILE, 16), "white")
        ImageDraw.Draw(label).text((TILE // 2, 8), name, fill="black", font=small, anchor="mm")
        canvas.paste(label.rotate(90, expand=True), (6, y))
    for col, (name, img, tumour_2d, keep) in enumerate(columns):
        x = left + col * (TILE + gap)
        draw.text((x + TILE // 2, top - 10), name, fill="black", font=font, anchor="mm")
        for row in range(4):
            y = top + row * (TILE + gap)
            shown = img if row == 3 else img[row]
            canvas.paste(Image.fromarray(tile(shown, tumour_2d, keep if row == 3 else None)), (x, y))
            draw.rectangle((x - 1, y - 1, x + TILE, y + TILE), outline=(60, 60, 60))
    y = top + 4 * (TILE + gap) + 2
    for i, line in enumerate(lines):
        colour = _FLAG if registration and registration[i].flagged else (0, 0, 0)
        draw.text((left, y + 16 * i), line, fill=colour, font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=False, compress_level=3)
    return path
