"""Text over the picture, drawn at full size so it stays sharp: the bars' captions, and the title card."""

from __future__ import annotations

import textwrap
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from soundsight.models.base import SceneJob
from soundsight.models.render.animatic.shots import Shot, palette_roles
from soundsight.schemas import VisualBible

__all__ = ["BOTTOM_BAR", "TOP_BAR", "caption_overlay", "fitted", "title_card"]

TOP_BAR, BOTTOM_BAR = 0.1, 0.17  # of the frame height: scene info and timeline / caption


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


FONT_FILES = {False: "DejaVuSansCondensed.ttf", True: "DejaVuSansCondensed-Bold.ttf"}


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Condensed where the system has it (Debian's ffmpeg pulls it in), else Pillow's own."""
    try:
        return ImageFont.truetype(FONT_FILES[bold], max(8, size))
    except OSError:
        return ImageFont.load_default(size=max(8, size))


def _rgb255(colour: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (int(round(float(v) * 255)) for v in colour)
    return r, g, b, alpha


def caption_overlay(job: SceneJob, bible: VisualBible, shot: Shot, W: int, H: int) -> Image.Image:
    """Text over the bars, full size, transparent elsewhere: scene info, palette swatches, the sentence."""
    overlay = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    bottom = int(round(H * BOTTOM_BAR))
    size = max(9, H // 26)
    font, small = _font(size), _font(int(size * 0.85))
    pad = size // 2
    heading = f"SCENE {job.index + 1}"
    draw.text((pad, pad // 2), heading, font=_font(size, bold=True), fill=(255, 255, 255, 255))
    span = (
        f"{_clock(job.start_seconds)}-{_clock(job.start_seconds + job.seconds)}  "
        if job.start_seconds or job.index == 0
        else ""
    )
    info = f"{span}{job.seconds:.1f} s  ·  {shot.move.replace('_', '-')}  ·  {shot.layout}"
    draw.text(
        (pad + draw.textlength(heading, font=font) + size, pad // 2 + 1),
        info,
        font=small,
        fill=(220, 220, 220, 230),
    )
    swatch = max(6, size - 2)
    for k, colour in enumerate(reversed(bible.palette)):
        x1 = W - pad - k * (swatch + 3)
        draw.rectangle(
            [x1 - swatch, pad // 2 + 1, x1, pad // 2 + 1 + swatch],
            fill=colour.rgb() + (255,),
            outline=(255, 255, 255, 120),
        )
    chars = max(20, int(W / (size * 0.52)))
    lines = textwrap.wrap(job.caption, width=chars)
    if len(lines) > 3:
        lines = lines[:3]
        lines[-1] = lines[-1][: max(0, chars - 1)].rstrip() + "…"
    line_h = int(size * 1.22)
    y0 = H - bottom + max(2, (bottom - len(lines) * line_h) // 2)
    for k, line in enumerate(lines):
        draw.text((pad, y0 + k * line_h), line, font=font, fill=(255, 255, 255, 255))
    return overlay


def fitted(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """`text`, or as many of its words as fit in `width` pixels in `font` followed by "…"."""
    if draw.textlength(text, font=font) <= width:
        return text
    words = text.split()
    while words and draw.textlength(" ".join(words) + "…", font=font) > width:
        words.pop()
    if words:
        return " ".join(words) + "…"
    cut = text  # one long word: as many characters as fit
    while cut and draw.textlength(cut + "…", font=font) > width:
        cut = cut[:-1]
    return cut + "…"


def title_card(bible: VisualBible, W: int, H: int) -> Image.Image:
    """The bible as a card over the picture: title, characters, setting, light, camera, palette."""
    roles = palette_roles(bible)
    overlay = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    top, bottom = int(round(H * TOP_BAR)), int(round(H * BOTTOM_BAR))
    draw.rectangle([0, top, W, H - bottom], fill=_rgb255(roles.shadow * 0.5, 225))
    size = max(9, H // 28)
    big, font, small = _font(int(size * 1.9), bold=True), _font(size), _font(int(size * 0.85))
    pad = size
    y = top + pad // 2
    label = "VISUAL BIBLE"
    label_x = W - pad - draw.textlength(label, font=small)
    title = fitted(draw, bible.title or "Untitled", big, label_x - size - pad)
    draw.text((pad, y), title, font=big, fill=(255, 255, 255, 255))
    draw.text((label_x, y + size // 2), label, font=small, fill=_rgb255(roles.accent * 0.5 + 0.5))
    y += int(size * 2.4)
    chars = max(30, int((W - 2 * pad) / (size * 0.5)))
    for character in bible.characters[:3]:
        name = (character.name or "cast").upper()
        draw.text((pad, y), name, font=_font(size, bold=True), fill=_rgb255(np.clip(roles.accent * 0.6 + 0.45, 0, 1)))
        x = pad + draw.textlength(name + "  ", font=_font(size, bold=True))
        draw.text(
            (x, y),
            textwrap.shorten(character.description, max(12, chars - len(name))),
            font=font,
            fill=(255, 255, 255, 255),
        )
        y += int(size * 1.35)
    y += size // 3
    for key, text in (("WORLD", bible.setting), ("LIGHT", bible.lighting), ("CAMERA", bible.camera)):
        if text:
            draw.text((pad, y), key, font=small, fill=(200, 200, 200, 220))
            draw.text(
                (pad + size * 4.5, y),
                textwrap.shorten(text, max(12, chars - 8)),
                font=small,
                fill=(235, 235, 235, 255),
            )
            y += int(size * 1.2)
    box = max(12, int((W - 2 * pad) / len(bible.palette)) - 8)
    y_sw = H - bottom - pad // 2 - int(size * 2.6)
    for k, colour in enumerate(bible.palette):
        x = pad + k * (box + 8)
        draw.rectangle([x, y_sw, x + box, y_sw + size], fill=colour.rgb() + (255,), outline=(255, 255, 255, 140))
        draw.text((x, y_sw + size + 2), f"{colour.name} {colour.hex}", font=small, fill=(230, 230, 230, 255))
    return overlay
