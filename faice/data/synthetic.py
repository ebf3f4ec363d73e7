"""Procedural cartoon faces with CelebA-style attributes: faice's embedded default dataset.

Deterministic per (seed, index) at any resolution; numpy + PIL only, drawn at 4x and box-downsampled.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES: tuple[str, ...] = ("Male", "Smiling", "Eyeglasses", "Blond_Hair", "Black_Hair", "Young")

RGB = tuple[int, int, int]

_P_MALE, _P_SMILING, _P_GLASSES, _P_YOUNG = 0.45, 0.5, 0.2, 0.75
_P_BLOND, _P_BLACK = 0.2, 0.3
_SUPERSAMPLE = 4
_OUTLINE_POINTS = 72
_ARC_POINTS = 24

_SKIN_TONES: tuple[RGB, ...] = (
    (250, 221, 200),
    (236, 192, 160),
    (219, 168, 126),
    (192, 138, 96),
    (148, 98, 66),
    (98, 64, 44),
)
_BLOND: tuple[RGB, ...] = ((232, 198, 118), (212, 170, 96), (244, 222, 160))
_BLACK: tuple[RGB, ...] = ((24, 20, 19), (42, 33, 29))
_YOUNG_HAIR: tuple[RGB, ...] = ((100, 62, 36), (66, 43, 28), (150, 66, 34), (138, 98, 60))
_OLD_HAIR: tuple[RGB, ...] = ((170, 168, 166), (214, 212, 208), (118, 114, 110), (100, 62, 36))
_GREY: RGB = (205, 204, 200)
_IRIS: tuple[RGB, ...] = ((84, 52, 30), (44, 32, 26), (60, 104, 156), (72, 112, 72))
_FRAMES: tuple[RGB, ...] = ((18, 18, 18), (74, 42, 24), (40, 44, 96), (120, 30, 40))
_LIPSTICK: tuple[RGB, ...] = ((190, 40, 62), (168, 52, 76), (206, 74, 84))
_MOUTH_INSIDE: RGB = (96, 24, 34)
_DARK_LINE: RGB = (40, 24, 20)

# One named uniform per random choice, drawn in one call: every face consumes the same draws, so
# toggling an attribute with the same rng state changes only the features that attribute drives.
_UNIFORMS = (
    "skin", "skin_jitter", "hair", "hair_jitter", "style", "fringe", "part", "cx", "cy", "size",
    "aspect", "jaw", "iris", "eye_size", "eye_gap", "brow", "mouth", "lips", "beard", "beard_style",
    "frames", "lens", "bg_hue", "bg_sat", "bg_val", "bg_gradient", "clothes_hue", "clothes_val",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticFace:
    """One synthetic sample: an RGB image, its CelebA-style 0/1 attributes and a caption."""

    image: Image.Image
    attributes: dict[str, int]
    caption: str


@dataclass(frozen=True)
class _Face:
    """Everything needed to draw one face; positions and sizes in frame units (0..1, y down)."""

    cx: float
    cy: float
    w: float  # half-width of the face
    h: float  # half-height of the face
    jaw: float  # superellipse exponent of the lower half: 2 = oval, 3 = square
    taper: float  # how much the jaw narrows towards the chin
    skin: RGB
    hair: RGB
    style: str  # "short", "bob" or "long"
    hairline: float  # y of the fringe's lower edge
    part: float  # signed x offset of a side-swept lock of hair; 0 = straight fringe
    eye_gap: float
    eye_r: float
    iris: RGB
    brow_width: float
    smiling: bool
    mouth_w: float  # half-width of the mouth
    lips: RGB
    beard: str  # "none", "stubble", "moustache" or "full"
    glasses: RGB | None
    lens_r: float
    wrinkles: bool
    bg_top: RGB
    bg_bottom: RGB
    clothes: RGB

    @property
    def eye_y(self) -> float:
        return self.cy - 0.3 * self.h

    @property
    def nose_y(self) -> float:
        return self.cy + 0.2 * self.h

    @property
    def mouth_y(self) -> float:
        return self.cy + 0.55 * self.h


class _Pen:
    """ImageDraw in frame units: converts 0..1 coordinates and widths to supersampled pixels."""

    def __init__(self, image: Image.Image) -> None:
        self.draw = ImageDraw.Draw(image, "RGBA")
        self.s = image.width

    def px(self, *coords: float) -> list[float]:
        return [c * self.s for c in coords]

    def width(self, w: float) -> int:
        return max(1, round(w * self.s))

    def points(self, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * self.s, y * self.s) for x, y in pts]

    def chord(self, box: tuple[float, float, float, float], start: float, end: float, fill: RGB) -> None:
        """Fill between an elliptic arc and its chord; angles in degrees clockwise from 3 o'clock.

        A polygon rather than ImageDraw.chord, which floods far outside the box for some float angles.
        """
        x0, y0, x1, y1 = box
        t = np.radians(np.linspace(start, end, _ARC_POINTS))
        xs = (x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t)
        ys = (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)
        self.draw.polygon(self.points(list(zip(xs.tolist(), ys.tolist(), strict=True))), fill=fill)


def sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    """Draw one face's attributes; Blond_Hair and Black_Hair come from one draw, so never both 1."""
    u = rng.random(5)
    return {
        "Male": int(u[0] < _P_MALE),
        "Smiling": int(u[1] < _P_SMILING),
        "Eyeglasses": int(u[2] < _P_GLASSES),
        "Blond_Hair": int(u[3] < _P_BLOND),
        "Black_Hair": int(_P_BLOND <= u[3] < _P_BLOND + _P_BLACK),
        "Young": int(u[4] < _P_YOUNG),
    }


def caption_for(attributes: dict[str, int]) -> str:
    """One-line caption, e.g. "a smiling young woman with blond hair and glasses"."""
    words = ["smiling"] if attributes["Smiling"] else []
    words.append("young" if attributes["Young"] else "older")
    words.append("man" if attributes["Male"] else "woman")
    extras = []
    if attributes["Blond_Hair"]:
        extras.append("blond hair")
    if attributes["Black_Hair"]:
        extras.append("black hair")
    if attributes["Eyeglasses"]:
        extras.append("glasses")
    if not attributes["Smiling"]:
        extras.append("a neutral expression")
    article = "an" if words[0][0] in "aeiou" else "a"
    subject = f"{article} {' '.join(words)}"
    if not extras:
        return subject
    if len(extras) == 1:
        return f"{subject} with {extras[0]}"
    return f"{subject} with {', '.join(extras[:-1])} and {extras[-1]}"


def draw_face(attributes: dict[str, int], rng: np.random.Generator, resolution: int) -> Image.Image:
    """Render one face: RGB, resolution x resolution; the same rng state gives the same face at any size."""
    u = dict(zip(_UNIFORMS, rng.random(len(_UNIFORMS)).tolist(), strict=True))
    face = _face_params(attributes, u)
    canvas = _gradient(face.bg_top, face.bg_bottom, resolution * _SUPERSAMPLE)
    pen = _Pen(canvas)
    _draw_hair_and_body(pen, face)
    _draw_skin(pen, face)
    _draw_beard(pen, face)
    _draw_fringe(pen, face)
    _draw_eyes(pen, face)
    _draw_mouth(pen, face)
    _draw_glasses(pen, face)
    return canvas.reduce(_SUPERSAMPLE)


def synthetic_face(index: int, resolution: int = 64, seed: int = 0) -> SyntheticFace:
    """Face number `index` of the dataset `seed`; independent of every other index (parallel-safe)."""
    rng = np.random.default_rng([seed, index])
    attributes = sample_attributes(rng)
    return SyntheticFace(draw_face(attributes, rng, resolution), attributes, caption_for(attributes))


def generate(n: int, resolution: int = 64, seed: int = 0, start: int = 0) -> Iterator[SyntheticFace]:
    """Yield faces start, start + 1, ..., start + n - 1 of the dataset `seed`."""
    for index in range(start, start + n):
        yield synthetic_face(index, resolution, seed)


def _pick(palette: tuple[RGB, ...], u: float) -> RGB:
    return palette[min(int(u * len(palette)), len(palette) - 1)]


def _scale(colour: RGB, k: float) -> RGB:
    return tuple(min(255, max(0, round(c * k))) for c in colour)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round((1 - t) * x + t * y) for x, y in zip(a, b, strict=True))


def _hsv(h: float, s: float, v: float) -> RGB:
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _hair_colour(attributes: dict[str, int], u: dict[str, float]) -> RGB:
    """Blond / black when flagged, else brown or auburn if young and mostly grey if older."""
    young = attributes["Young"]
    if attributes["Blond_Hair"]:
        colour = _pick(_BLOND, u["hair"])
    elif attributes["Black_Hair"]:
        colour = _pick(_BLACK, u["hair"])
    else:
        colour = _pick(_YOUNG_HAIR if young else _OLD_HAIR, u["hair"])
    if not young and (attributes["Blond_Hair"] or attributes["Black_Hair"]):
        colour = _mix(colour, _GREY, 0.3)
    return _scale(colour, 0.92 + 0.16 * u["hair_jitter"])


def _hair_style(attributes: dict[str, int], u: dict[str, float], cy: float, h: float) -> dict:
    """Men: short, receding when older; women: long or a bob, with a straight or side-swept fringe."""
    if attributes["Male"]:
        style = "short"
        depth = 0.62 if attributes["Young"] else 0.8
    else:
        style = "long" if u["style"] < 0.75 else "bob"
        depth = 0.45 if u["fringe"] < 0.4 else 0.65
    side = 1.0 if u["part"] < 0.5 else -1.0
    part = 0.0 if depth < 0.5 else side * (0.02 + 0.05 * abs(2 * u["part"] - 1))
    return {"style": style, "hairline": cy - depth * h, "part": part}


def _background(u: dict[str, float]) -> tuple[RGB, RGB]:
    """A muted colour, flat or fading darker towards the bottom."""
    top = _hsv(u["bg_hue"], 0.1 + 0.4 * u["bg_sat"], 0.55 + 0.4 * u["bg_val"])
    bottom = _scale(top, 0.7) if u["bg_gradient"] < 0.5 else top
    return top, bottom


def _face_params(attributes: dict[str, int], u: dict[str, float]) -> _Face:
    """Turn attributes and named uniforms in [0, 1) into a concrete face description."""
    male, young = attributes["Male"], attributes["Young"]
    cy, h = 0.53 + 0.03 * (u["cy"] - 0.5), 0.29 + 0.04 * u["size"]
    skin = _scale(_pick(_SKIN_TONES, u["skin"]), 0.95 + 0.1 * u["skin_jitter"])
    lips = _pick(_LIPSTICK, u["lips"]) if not male else _mix(skin, (150, 60, 60), 0.45)
    beard = "none"
    if male and u["beard"] < 0.35:
        beard = ("stubble", "moustache", "full")[min(int(3 * u["beard_style"]), 2)]
    bg_top, bg_bottom = _background(u)
    return _Face(
        cx=0.5 + 0.04 * (u["cx"] - 0.5),
        cy=cy,
        w=h * (0.76 + 0.08 * u["aspect"] + 0.04 * male),
        h=h,
        jaw=2.9 + 0.6 * u["jaw"] if male else 2.0 + 0.2 * u["jaw"],
        taper=0.08 if male else 0.22,
        skin=skin,
        hair=_hair_colour(attributes, u),
        **_hair_style(attributes, u, cy, h),
        eye_gap=h * (0.33 + 0.05 * u["eye_gap"]),
        eye_r=h * (0.075 + 0.02 * u["eye_size"]),
        iris=_pick(_IRIS, u["iris"]),
        brow_width=h * (0.05 + 0.02 * u["brow"] + 0.02 * male),
        smiling=bool(attributes["Smiling"]),
        mouth_w=h * (0.28 + 0.06 * u["mouth"]),
        lips=lips,
        beard=beard,
        glasses=_pick(_FRAMES, u["frames"]) if attributes["Eyeglasses"] else None,
        lens_r=h * (0.2 + 0.03 * u["lens"]),
        wrinkles=not young,
        bg_top=bg_top,
        bg_bottom=bg_bottom,
        clothes=_hsv(u["clothes_hue"], 0.45, 0.3 + 0.5 * u["clothes_val"]),
    )


def _gradient(top: RGB, bottom: RGB, size: int) -> Image.Image:
    """A size x size RGB image fading linearly from `top` to `bottom`."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    rows = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return Image.fromarray(np.repeat(rows[:, None, :], size, axis=1).round().astype(np.uint8))


def _outline(f: _Face, grow: float = 1.0) -> list[tuple[float, float]]:
    """Face contour: an ellipse on top, a superellipse (exponent f.jaw) narrowing to the chin below."""
    t = np.linspace(0.0, 2 * math.pi, _OUTLINE_POINTS, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    p = np.where(s > 0, f.jaw, 2.0)
    x = np.sign(c) * np.abs(c) ** (2 / p) * (1 - f.taper * np.clip(s, 0, None) ** 2)
    y = np.sign(s) * np.abs(s) ** (2 / p)
    return list(zip((f.cx + grow * f.w * x).tolist(), (f.cy + grow * f.h * y).tolist(), strict=True))


def _draw_hair_and_body(pen: _Pen, f: _Face) -> None:
    """Shoulders, hair behind the head, neck, and ears for short hair."""
    cx, cy, w, h = f.cx, f.cy, f.w, f.h
    pen.draw.ellipse(pen.px(cx - 0.46, cy + 1.0 * h, cx + 0.46, cy + h + 0.6), fill=f.clothes)
    if f.style != "short":
        half = w * (1.24 if f.style == "long" else 1.16)
        bottom = 0.99 if f.style == "long" else cy + 0.6 * h
        pen.draw.polygon(
            pen.points(
                [(cx - half, cy), (cx + half, cy), (cx + 1.1 * half, bottom), (cx - 1.1 * half, bottom)]
            ),
            fill=f.hair,
        )
    neck = _scale(f.skin, 0.85)
    pen.draw.rectangle(pen.px(cx - 0.4 * w, cy + 0.4 * h, cx + 0.4 * w, cy + 1.2 * h), fill=neck)
    pen.draw.ellipse(pen.px(cx - 0.4 * w, cy + 1.1 * h, cx + 0.4 * w, cy + 1.3 * h), fill=neck)
    cap_bottom = cy + (0.15 if f.style == "short" else 0.6) * h
    pen.draw.ellipse(pen.px(cx - 1.12 * w, cy - 1.14 * h, cx + 1.12 * w, cap_bottom), fill=f.hair)
    if f.style == "short":
        for sgn in (-1, 1):
            ex = cx + sgn * 0.98 * w
            pen.draw.ellipse(pen.px(ex - 0.1 * w, f.eye_y, ex + 0.1 * w, f.nose_y + 0.05 * h), fill=neck)


def _draw_skin(pen: _Pen, f: _Face) -> None:
    """Face, nose shadow and, for older faces, nasolabial and forehead lines."""
    pen.draw.polygon(pen.points(_outline(f)), fill=f.skin)
    shade = (*_scale(f.skin, 0.7), 150)
    ny = f.nose_y
    pen.draw.ellipse(pen.px(f.cx - 0.1 * f.w, ny - 0.02 * f.h, f.cx + 0.1 * f.w, ny + 0.06 * f.h), fill=shade)
    if not f.wrinkles:
        return
    line, width = _scale(f.skin, 0.72), pen.width(0.035 * f.h)
    for sgn in (-1, 1):
        start = (f.cx + sgn * 0.3 * f.w, ny + 0.06 * f.h)
        end = (f.cx + sgn * (f.mouth_w + 0.08 * f.w), f.mouth_y + 0.08 * f.h)
        pen.draw.line(pen.points([start, end]), fill=line, width=width)
    for k in range(2):
        y = f.eye_y - (0.3 + 0.12 * k) * f.h
        if y > f.hairline + 0.03 * f.h:
            pen.draw.line(pen.px(f.cx - 0.3 * f.w, y, f.cx + 0.3 * f.w, y), fill=line, width=width)


def _draw_beard(pen: _Pen, f: _Face) -> None:
    """Stubble shadow or full beard over the lower face, or a moustache above the mouth."""
    if f.beard == "moustache":
        my, mw = f.mouth_y, f.mouth_w
        box = (f.cx - 1.05 * mw, my - 0.17 * f.h, f.cx + 1.05 * mw, my - 0.03 * f.h)
        pen.chord(box, 180, 360, fill=f.hair)
        return
    if f.beard == "none":
        return
    cut = f.nose_y + (0.1 if f.beard == "full" else 0.05) * f.h
    grow = 1.04 if f.beard == "full" else 1.0
    lower = [(x, y) for x, y in _outline(f, grow) if y > cut]
    fill = (*f.hair, 255) if f.beard == "full" else (*_scale(f.hair, 0.6), 80)
    pen.draw.polygon(pen.points(lower), fill=fill)


def _draw_fringe(pen: _Pen, f: _Face) -> None:
    """Hair over the forehead down to f.hairline, plus a side-swept lock when f.part != 0."""
    top = f.cy - 1.03 * f.h
    if f.hairline > top:
        sin = max(-1.0, (f.hairline - f.cy) / (1.03 * f.h))
        phi = math.degrees(math.asin(sin))
        box = (f.cx - 1.03 * f.w, top, f.cx + 1.03 * f.w, f.cy + 1.03 * f.h)
        pen.chord(box, 180 - phi, 360 + phi, fill=f.hair)
    if f.part:
        x0 = f.cx + f.part
        lock = (x0 - 0.9 * f.w, f.hairline - 0.25 * f.h, x0 + 0.9 * f.w, f.hairline + 0.12 * f.h)
        start, end = (180, 290) if f.part > 0 else (250, 360)
        pen.chord(lock, start, end, fill=f.hair)


def _draw_eyes(pen: _Pen, f: _Face) -> None:
    """Whites, iris, pupil, upper lid line and eyebrows, mirrored about f.cx."""
    r, ey = f.eye_r, f.eye_y
    brow = _mix(f.hair, _DARK_LINE, 0.35)
    for sgn in (-1, 1):
        ex = f.cx + sgn * f.eye_gap
        white = pen.px(ex - 1.6 * r, ey - 1.05 * r, ex + 1.6 * r, ey + 1.05 * r)
        pen.draw.ellipse(white, fill=(250, 250, 248))
        pen.draw.ellipse(pen.px(ex - r, ey - r, ex + r, ey + r), fill=f.iris)
        pen.draw.ellipse(pen.px(ex - 0.5 * r, ey - 0.5 * r, ex + 0.5 * r, ey + 0.5 * r), fill=(12, 10, 10))
        pen.draw.arc(white, 180, 360, fill=_DARK_LINE, width=pen.width(0.5 * r))
        inner, outer = (ex - sgn * 1.7 * r, ey - 2.1 * r), (ex + sgn * 1.9 * r, ey - 2.5 * r)
        pen.draw.line(pen.points([inner, outer]), fill=brow, width=pen.width(f.brow_width))


def _draw_mouth(pen: _Pen, f: _Face) -> None:
    """Smiling: an open D-shaped mouth with teeth; neutral: closed lips with a dark parting line."""
    cx, my, mw, h = f.cx, f.mouth_y, f.mouth_w, f.h
    if f.smiling:
        lip = 0.04 * h
        pen.chord((cx - mw - lip, my - 0.2 * h - lip, cx + mw + lip, my + 0.2 * h + lip), 0, 180, fill=f.lips)
        pen.chord((cx - mw, my - 0.2 * h, cx + mw, my + 0.2 * h), 0, 180, fill=_MOUTH_INSIDE)
        pen.chord((cx - 0.8 * mw, my - 0.08 * h, cx + 0.8 * mw, my + 0.08 * h), 0, 180, fill=(250, 248, 240))
        return
    nw = 0.8 * mw
    pen.draw.ellipse(pen.px(cx - nw, my - 0.05 * h, cx + nw, my + 0.07 * h), fill=f.lips)
    pen.draw.line(pen.px(cx - nw, my, cx + nw, my), fill=_scale(f.lips, 0.5), width=pen.width(0.025 * h))


def _draw_glasses(pen: _Pen, f: _Face) -> None:
    """Two rings with a faint lens, a bridge, and arms running to the edge of the face."""
    if f.glasses is None:
        return
    rx, ry, ey, width = f.lens_r, 0.8 * f.lens_r, f.eye_y, pen.width(0.045 * f.h)
    for sgn in (-1, 1):
        ex = f.cx + sgn * f.eye_gap
        pen.draw.ellipse(pen.px(ex - rx, ey - ry, ex + rx, ey + ry), fill=(255, 255, 255, 50))
        pen.draw.ellipse(pen.px(ex - rx, ey - ry, ex + rx, ey + ry), outline=f.glasses, width=width)
        arm = [(ex + sgn * rx, ey - 0.3 * ry), (f.cx + sgn * 1.0 * f.w, ey - 0.4 * ry)]
        pen.draw.line(pen.points(arm), fill=f.glasses, width=width)
    bridge = [(f.cx - f.eye_gap + rx, ey - 0.2 * ry), (f.cx + f.eye_gap - rx, ey - 0.2 * ry)]
    pen.draw.line(pen.points(bridge), fill=f.glasses, width=width)
