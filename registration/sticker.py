"""The reference sticker: one source of truth for its design, and its renderings.

The clinic prints stickers (:func:`sticker_pdf`, several at true size on an A4 page, or
:func:`sticker_svg`, one); the patient sticks one beside the scar, so that each photo carries its
own scale (two ArUco markers of a known side) and colour reference (a grey ramp and skin tones of
documented CIELAB values). :mod:`registration.sticker_detect` finds it in a photo.

Coordinates of the design are in millimetres, origin at the sticker's top-left corner, x to the
right, y down. The CIELAB values (D65, 2° observer) are those of the sRGB colours the files ask the
printer for; a printed batch differs by the printer's error, which a spectrophotometer measurement
of a batch would replace here.

:func:`render_sticker` rasterises the design and :func:`place_sticker` draws it into a photo through
a known homography (tests and ``bench/sticker_bench.py``).
"""

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import lab2rgb

#: Size of one sticker, mm.
STICKER_SIZE_MM = (40.0, 25.0)
#: ArUco dictionary of the markers (``cv2.aruco`` name) and its bits per side.
ARUCO_DICTIONARY = "DICT_4X4_50"
_MARKER_BITS = 4
#: Marker ids, left and right. A sticker carries both; another id is not ours.
MARKER_IDS = (7, 23)
#: Side of each marker, mm, black border included (6 cells of 2 mm).
MARKER_SIDE_MM = 12.0
#: Top-left corner (x, y) of each marker, mm.
MARKER_ORIGINS_MM = ((2.0, 2.0), (26.0, 2.0))
#: The human-readable line, its baseline (x, y) and font size, mm.
TEXT = "Scar Watch reference \u2014 keep flat, beside the scar"
TEXT_ORIGIN_MM = (2.0, 23.2)
TEXT_WIDTH_MM = 36.0
TEXT_SIZE_MM = 1.6
#: Paper white (what the background is printed as: nothing).
PAPER_RGB = (255, 255, 255)


@dataclass(frozen=True)
class Patch:
    """A colour patch: its name, rectangle (x, y, width, height) in mm, and CIELAB D65 value."""

    name: str
    rect_mm: tuple
    lab: tuple

    @property
    def rgb(self):
        """The sRGB colour printed, 0-255 ints."""
        return tuple(int(v) for v in np.round(lab2rgb(np.array([[self.lab]], float))[0, 0] * 255))


def _patches():
    greys = [95.0, 80.0, 65.0, 50.0, 35.0, 20.0]
    ramp = [Patch(f"grey L{int(L)}", (2.0 + 6.0 * i, 15.5, 6.0, 4.0), (L, 0.0, 0.0))
            for i, L in enumerate(greys)]
    skins = [("skin very light", (75.0, 9.0, 15.0)), ("skin light", (66.0, 13.0, 19.0)),
             ("skin medium", (56.0, 15.0, 23.0)), ("skin tan", (46.0, 16.0, 24.0)),
             ("skin brown", (36.0, 14.0, 20.0)), ("pink", (60.0, 30.0, 14.0))]
    tones = []
    for k, (name, lab) in enumerate(skins):
        col, row = k % 2, k // 2
        tones.append(Patch(name, (15.5 + 5.0 * col, 2.0 + 4.2 * row, 4.0, 3.6), lab))
    return tuple(ramp + tones)


#: The colour patches: a grey ramp (first six) and skin tones, with their CIELAB values.
PATCHES = _patches()
#: Indices into :data:`PATCHES` of the grey ramp, lightest first.
GREY_PATCHES = tuple(range(6))
#: Indices into :data:`PATCHES` of the skin tones.
SKIN_PATCHES = tuple(range(6, len(PATCHES)))


def aruco_dictionary():
    """The ``cv2.aruco.Dictionary`` of the markers."""
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, ARUCO_DICTIONARY))


def marker_cells(marker_id):
    """Black/white cells of a marker, black border included.

    Returns
    -------
    cells : ndarray, shape (6, 6), bool
        True where the cell is black; row 0 at the top.
    """
    side = _MARKER_BITS + 2
    image = cv2.aruco.generateImageMarker(aruco_dictionary(), int(marker_id), side)
    return image < 128


def marker_corners_mm(index):
    """Corners of marker `index` (0 left, 1 right) in mm, ArUco order (top-left, top-right,
    bottom-right, bottom-left), shape (4, 2), float64."""
    x, y = MARKER_ORIGINS_MM[index]
    s = MARKER_SIDE_MM
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], float)


def sticker_centre_mm():
    """The sticker's centre (x, y), mm: where its scale is stated."""
    return np.array(STICKER_SIZE_MM, float) / 2


def _rects(*, origin=(0.0, 0.0)):
    """The design as filled rectangles: (x, y, w, h, (r, g, b)) in mm, painted in order."""
    ox, oy = origin
    out = []
    cell = MARKER_SIDE_MM / (_MARKER_BITS + 2)
    for index, marker_id in enumerate(MARKER_IDS):
        mx, my = MARKER_ORIGINS_MM[index]
        cells = marker_cells(marker_id)
        for r in range(cells.shape[0]):
            c = 0
            while c < cells.shape[1]:  # runs of black cells, so a row is one rectangle each
                if not cells[r, c]:
                    c += 1
                    continue
                start = c
                while c < cells.shape[1] and cells[r, c]:
                    c += 1
                out.append((ox + mx + start * cell, oy + my + r * cell, (c - start) * cell, cell, (0, 0, 0)))
    for patch in PATCHES:
        x, y, w, h = patch.rect_mm
        out.append((ox + x, oy + y, w, h, patch.rgb))
    return out


# Helvetica advance widths (Adobe AFM, 1/1000 em) of the characters of TEXT.
_HELVETICA = {" ": 278, ",": 278, "-": 333, ".": 278, "\u2014": 1000, "S": 667, "W": 944, "a": 556,
              "b": 556, "c": 500, "d": 556, "e": 556, "f": 278, "g": 556, "h": 556, "i": 222, "k": 500,
              "l": 222, "m": 833, "n": 556, "o": 556, "p": 556, "r": 333, "s": 500, "t": 278, "u": 556,
              "y": 500}


def _text_scale():
    """Horizontal scaling (%) that makes TEXT exactly TEXT_WIDTH_MM wide in Helvetica."""
    natural = sum(_HELVETICA[ch] for ch in TEXT) / 1000 * TEXT_SIZE_MM
    return 100.0 * TEXT_WIDTH_MM / natural


def sticker_svg():
    """One sticker as an SVG document at true size (``width="40mm"``), a thin grey cutting line
    around it.

    Returns
    -------
    svg : str
    """
    w, h = STICKER_SIZE_MM
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:g}mm" height="{h:g}mm" '
        f'viewBox="0 0 {w:g} {h:g}">',
        f'<title>Scar Watch reference sticker, {w:g} x {h:g} mm; markers {MARKER_SIDE_MM:g} mm '
        f'({ARUCO_DICTIONARY} ids {MARKER_IDS[0]} and {MARKER_IDS[1]})</title>',
        f'<rect x="0" y="0" width="{w:g}" height="{h:g}" fill="#ffffff" stroke="#bbbbbb" '
        'stroke-width="0.1"/>',
        '<g shape-rendering="crispEdges">',
    ]
    for x, y, rw, rh, (r, g, b) in _rects():
        parts.append(f'<rect x="{x:.4g}" y="{y:.4g}" width="{rw:.4g}" height="{rh:.4g}" '
                     f'fill="#{r:02x}{g:02x}{b:02x}"/>')
    parts.append("</g>")
    tx, ty = TEXT_ORIGIN_MM
    parts.append(f'<text x="{tx:g}" y="{ty:g}" font-family="Helvetica, Arial, sans-serif" '
                 f'font-size="{TEXT_SIZE_MM:g}" textLength="{TEXT_WIDTH_MM:g}" '
                 f'lengthAdjust="spacingAndGlyphs" fill="#000000">{TEXT}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


#: A4 in mm, and the sheet's layout: columns x rows of stickers, the gap between them.
A4_MM = (210.0, 297.0)
SHEET_GRID = (4, 7)
SHEET_GAP_MM = 8.0
SHEET_TOP_MM = 40.0
_PT_PER_MM = 72.0 / 25.4


def sheet_origins_mm():
    """Top-left corners (x, y), mm from the page's top-left, of the stickers on an A4 sheet."""
    cols, rows = SHEET_GRID
    w, h = STICKER_SIZE_MM
    left = (A4_MM[0] - cols * w - (cols - 1) * SHEET_GAP_MM) / 2
    return [(left + c * (w + SHEET_GAP_MM), SHEET_TOP_MM + r * (h + SHEET_GAP_MM))
            for r in range(rows) for c in range(cols)]


def _pdf_text(text):
    return "(" + text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(
        b")", b"\\)").decode("latin-1") + ")"


def sticker_pdf():
    """An A4 page of stickers at true size, as a vector PDF written directly (rectangles and two
    lines of Helvetica: no PDF library needed).

    The page has a 50-mm check ruler and a line asking for printing at 100 %; each sticker has a
    thin grey cutting line. Coordinates are in mm through one scaling, y down, so the drawing is the
    same as :func:`sticker_svg`'s.

    Returns
    -------
    pdf : bytes
    """
    pw, ph = A4_MM[0] * _PT_PER_MM, A4_MM[1] * _PT_PER_MM
    ops = [f"{_PT_PER_MM:.6f} 0 0 {-_PT_PER_MM:.6f} 0 {ph:.4f} cm"]  # mm, origin top-left, y down

    def text(x, y, size, string, scale=100.0):
        ops.append(f"BT /F1 {size:g} Tf {scale:.3f} Tz 1 0 0 -1 {x:.3f} {y:.3f} Tm {_pdf_text(string)} Tj ET")

    ops.append("0 0 0 rg")
    text(15.0, 16.0, 3.5, "Scar Watch reference stickers")
    text(15.0, 21.5, 2.6, "Print at 100 % (actual size, no fit-to-page). Each square marker must "
                          f"measure {MARKER_SIDE_MM:g} mm; the ruler below must measure 50 mm.")
    ops.append("0.1 w 15 27 m 65 27 l S")
    for k in range(11):
        tick = 3.0 if k % 5 == 0 else 1.5
        ops.append(f"{15 + 5 * k:g} 27 m {15 + 5 * k:g} {27 - tick:g} l S")
    text(67.0, 27.5, 2.4, "50 mm")
    w, h = STICKER_SIZE_MM
    for ox, oy in sheet_origins_mm():
        ops.append(f"0.73 0.73 0.73 RG 0.1 w {ox:.3f} {oy:.3f} {w:g} {h:g} re S")
        for x, y, rw, rh, (r, g, b) in _rects(origin=(ox, oy)):
            ops.append(f"{r / 255:.4f} {g / 255:.4f} {b / 255:.4f} rg {x:.3f} {y:.3f} {rw:.3f} {rh:.3f} re f")
        ops.append("0 0 0 rg")
        text(ox + TEXT_ORIGIN_MM[0], oy + TEXT_ORIGIN_MM[1], TEXT_SIZE_MM, TEXT, _text_scale())
    content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.4f} {ph:.4f}] "
         "/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>").encode(),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title (Scar Watch reference stickers) /Producer (Scar Watch) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


def render_sticker(*, px_per_mm=10.0):
    """Rasterise one sticker (markers and patches exact; the text line as a grey bar).

    Parameters
    ----------
    px_per_mm : float, keyword-only
        Resolution; pixel (i, j) covers mm [j, j + 1) / px_per_mm horizontally.

    Returns
    -------
    image : ndarray, shape (round(25 * px_per_mm), round(40 * px_per_mm), 3), uint8
    """
    if not px_per_mm > 0:
        raise ValueError(f"px_per_mm must be positive, got {px_per_mm}.")
    ss = 4  # supersampling, then area averaging: exact edge coverage to 1/16 pixel
    w, h = STICKER_SIZE_MM
    big_ppm = px_per_mm * ss
    W, H = round(w * px_per_mm) * ss, round(h * px_per_mm) * ss
    canvas = np.empty((H, W, 3), np.uint8)
    canvas[:] = PAPER_RGB
    for x, y, rw, rh, colour in _rects():
        x0, y0 = round(x * big_ppm), round(y * big_ppm)
        x1, y1 = round((x + rw) * big_ppm), round((y + rh) * big_ppm)
        canvas[y0:y1, x0:x1] = colour
    tx, ty = TEXT_ORIGIN_MM
    canvas[round((ty - 1.1) * big_ppm):round(ty * big_ppm),
           round(tx * big_ppm):round((tx + TEXT_WIDTH_MM) * big_ppm)] = 110
    return cv2.resize(canvas, (W // ss, H // ss), interpolation=cv2.INTER_AREA)


def local_scale(homography, point_mm=None):
    """Millimetres per pixel at `point_mm` of a sticker-to-image homography.

    The geometric mean over directions: 1 / sqrt(|det J|), with J the Jacobian of the map from mm
    to image pixels at that point (under tilt, one direction is foreshortened).

    Parameters
    ----------
    homography : array_like, shape (3, 3)
        Sticker mm (x, y, 1) -> image pixel (x, y, 1).
    point_mm : array_like, shape (2,), optional
        Default: the sticker's centre.

    Returns
    -------
    mm_per_px : float
    """
    jac = _jacobian(homography, point_mm)
    return float(1.0 / np.sqrt(abs(np.linalg.det(jac))))


def _jacobian(homography, point_mm=None):
    H = np.asarray(homography, float)
    p = sticker_centre_mm() if point_mm is None else np.asarray(point_mm, float)
    v = H @ np.array([p[0], p[1], 1.0])
    x, y, w = v
    return np.array([[H[0, 0] * w - x * H[2, 0], H[0, 1] * w - x * H[2, 1]],
                     [H[1, 0] * w - y * H[2, 0], H[1, 1] * w - y * H[2, 1]]]) / w**2


def perspective_homography(*, width_px, centre, rotation_deg=0.0, tilt_deg=0.0, tilt_axis_deg=0.0,
                           focal_px=1000.0):
    """Sticker mm -> image homography of a camera looking at the sticker tilted by `tilt_deg`.

    A pinhole camera (focal length `focal_px`, principal point `centre`) and the sticker's plane
    turned by `rotation_deg` in its own plane, then tilted by `tilt_deg` about an in-plane axis at
    `tilt_axis_deg`; the sticker's centre lies on the optical axis at the distance where its width
    spans `width_px` pixels before tilting.

    Returns
    -------
    homography : ndarray, shape (3, 3), float64
    """
    w_mm = STICKER_SIZE_MM[0]
    distance = focal_px * w_mm / width_px
    a, t, r = np.deg2rad([tilt_axis_deg, tilt_deg, rotation_deg])
    axis = np.array([np.cos(a), np.sin(a), 0.0])
    R_tilt, _ = cv2.Rodrigues(axis * t)
    R_rot = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    R = R_tilt @ R_rot
    c = sticker_centre_mm()
    # plane point (u, v) mm -> camera: R @ (u - cx, v - cy, 0) + (0, 0, distance)
    T = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1.0]])
    M = np.column_stack([R[:, 0], R[:, 1], np.array([0, 0, distance])])
    K = np.array([[focal_px, 0, centre[0]], [0, focal_px, centre[1]], [0, 0, 1.0]])
    H = K @ M @ T
    return H / H[2, 2]


def place_sticker(image, homography, *, light=1.0):
    """Draw the sticker into `image` through `homography` (sticker mm -> image pixel).

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
    homography : array_like, shape (3, 3)
    light : float, keyword-only
        The sticker's brightness in linear light relative to its printed colours (the light on the
        skin where it lies).

    Returns
    -------
    photo : ndarray, shape (M, N, 3), uint8
    mask : ndarray, shape (M, N), bool
        Pixels the sticker covers (more than half).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an RGB uint8 array of shape (M, N, 3).")
    H = np.asarray(homography, float)
    ppm = float(np.clip(2.0 / local_scale(H), 2.0, 40.0))  # about two raster pixels per image pixel
    raster = render_sticker(px_per_mm=ppm)
    if light != 1.0:
        lin = (raster / 255.0) ** 2.2 * light
        raster = np.clip(np.round(255 * np.clip(lin, 0, 1) ** (1 / 2.2)), 0, 255).astype(np.uint8)
    # raster pixel centre (i + 0.5) / ppm mm
    S = np.array([[1 / ppm, 0, 0.5 / ppm], [0, 1 / ppm, 0.5 / ppm], [0, 0, 1.0]])
    M = H @ S
    h, w = image.shape[:2]
    blurred = cv2.GaussianBlur(raster, (0, 0), 0.5) if ppm > 2.0 else raster
    warped = cv2.warpPerspective(blurred, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpPerspective(np.ones(raster.shape[:2], np.float32), M, (w, h), flags=cv2.INTER_LINEAR)
    a = alpha[..., None]
    out = np.round(image * (1 - a) + warped * a).astype(np.uint8)
    return out, alpha > 0.5


def _planck_rgb(kelvin):
    """Linear sRGB (green = 1) of a black body at `kelvin` (Kim et al.'s cubic fit of the Planckian
    locus, 1667-25000 K)."""
    T = float(kelvin)
    if not 1667 <= T <= 25000:
        raise ValueError(f"colour temperature {T} K is outside 1667-25000 K.")
    if T <= 4000:
        x = -0.2661239e9 / T**3 - 0.2343589e6 / T**2 + 0.8776956e3 / T + 0.179910
    else:
        x = -3.0258469e9 / T**3 + 2.1070379e6 / T**2 + 0.2226347e3 / T + 0.240390
    if T <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif T <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    XYZ = np.array([x / y, 1.0, (1 - x - y) / y])
    M = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                  [0.0556434, -0.2040259, 1.0572252]])
    rgb = M @ XYZ
    return rgb / rgb[1]


def colour_cast(image, *, kelvin=6500.0, reference_kelvin=6500.0, ev=0.0):
    """A white-balance and exposure error, as a camera that assumed `reference_kelvin` under light
    of `kelvin` would make it: per-channel gains in linear sRGB (von Kries), times 2**ev, clipped.

    Parameters
    ----------
    image : ndarray, shape (M, N, 3), uint8
    kelvin, reference_kelvin : float, keyword-only
    ev : float, keyword-only

    Returns
    -------
    cast : ndarray, shape (M, N, 3), uint8
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an RGB uint8 array of shape (M, N, 3).")
    gains = _planck_rgb(kelvin) / _planck_rgb(reference_kelvin) * 2.0 ** ev
    v = np.arange(256) / 255
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    out = np.empty_like(image)
    for c in range(3):
        x = np.clip(lin * gains[c], 0, 1)
        srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
        out[..., c] = np.round(srgb * 255).astype(np.uint8)[image[..., c]]
    return out
