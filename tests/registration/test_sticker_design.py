"""The reference sticker's design and its SVG, PDF and raster renderings."""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose
from skimage.color import rgb2lab

from registration import sticker

PT = 72 / 25.4


def _detect(gray):
    det = cv2.aruco.ArucoDetector(sticker.aruco_dictionary(), cv2.aruco.DetectorParameters())
    corners, ids, _ = det.detectMarkers(gray)
    return {} if ids is None else {int(i): c.reshape(4, 2) for i, c in zip(ids.ravel(), corners)}


def test_patches_documented_lab_matches_printed_rgb():
    rgb = np.array([[p.rgb for p in sticker.PATCHES]], float) / 255
    lab = rgb2lab(rgb)[0]
    assert_allclose(lab, [p.lab for p in sticker.PATCHES], atol=0.6)  # 8-bit rounding only
    greys = [sticker.PATCHES[i].lab[0] for i in sticker.GREY_PATCHES]
    assert greys == sorted(greys, reverse=True)


def test_patches_and_markers_inside_sticker_and_apart():
    w, h = sticker.STICKER_SIZE_MM
    boxes = [(*sticker.MARKER_ORIGINS_MM[i], sticker.MARKER_SIDE_MM, sticker.MARKER_SIDE_MM) for i in range(2)]
    boxes += [p.rect_mm for p in sticker.PATCHES]
    for x, y, bw, bh in boxes:
        assert 0 < x and x + bw < w and 0 < y and y + bh < h
    for a in range(2):  # a white quiet zone of at least 1 mm around each marker
        ax, ay, s, _ = boxes[a]
        for b, (x, y, bw, bh) in enumerate(boxes):
            if b != a:
                gap = max(x - (ax + s), ax - (x + bw), y - (ay + s), ay - (y + bh))
                assert gap >= 1.0


def test_raster_has_both_markers_at_their_place():
    ppm = 8.0
    image = sticker.render_sticker(px_per_mm=ppm)
    assert image.shape == (200, 320, 3) and image.dtype == np.uint8
    found = _detect(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    assert set(found) == set(sticker.MARKER_IDS)
    for index, marker_id in enumerate(sticker.MARKER_IDS):
        # pixel centre convention: mm x -> pixel x * ppm - 0.5
        assert_allclose(found[marker_id], sticker.marker_corners_mm(index) * ppm - 0.5, atol=0.6)


def test_svg_states_true_size_and_marker_cells():
    svg = sticker.sticker_svg()
    root = ET.fromstring(svg.encode())
    assert root.get("width") == "40mm" and root.get("height") == "25mm"
    assert root.get("viewBox") == "0 0 40 25"
    ns = "{http://www.w3.org/2000/svg}"
    black = [r for r in root.iter(f"{ns}rect") if r.get("fill") == "#000000"]
    xs = [float(r.get("x")) for r in black] + [float(r.get("x")) + float(r.get("width")) for r in black]
    left = [x for x in xs if x < 20]
    assert_allclose(max(left) - min(left), sticker.MARKER_SIDE_MM)
    assert sticker.TEXT in svg


def _pdf_rects(pdf):
    """Filled rectangles of our PDF's content stream, (x, y, w, h) in points, with their fill."""
    stream = re.search(rb"stream\n(.*?)\nendstream", pdf, re.S).group(1).decode("latin-1")
    ctm = None
    fill, out = None, []
    for line in stream.splitlines():
        for m in re.finditer(r"([-\d. ]+) (cm|rg|re f)", line):
            nums = [float(v) for v in m.group(1).split()]
            if m.group(2) == "cm":
                ctm = nums[-6:]
            elif m.group(2) == "rg":
                fill = tuple(nums[-3:])
            else:
                x, y, w, h = nums[-4:]
                a, b, c, d, e, f = ctm
                out.append((a * x + e, d * y + f, a * w, d * h, fill))
    return out


def test_pdf_is_a4_and_marker_measures_its_stated_size():
    pdf = sticker.sticker_pdf()
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    box = [float(v) for v in re.search(rb"/MediaBox \[([\d. ]+)\]", pdf).group(1).split()]
    assert_allclose(box[2:], [210 * PT, 297 * PT], atol=0.01)
    black = [r for r in _pdf_rects(pdf) if r[4] == (0.0, 0.0, 0.0)]
    ox, oy = (v * PT for v in sticker.sheet_origins_mm()[0])
    top = 297 * PT
    # the first sticker's left marker: black rectangles in its left half (PDF y points up)
    first = [r for r in black if ox <= r[0] < ox + 20 * PT and top - oy - 25 * PT < r[1] <= top - oy]
    assert len(first) >= 6
    x0 = min(x for x, *_ in first)
    x1 = max(x + w for x, _, w, *_ in first)
    assert_allclose((x1 - x0) / PT, sticker.MARKER_SIDE_MM, atol=1e-3)
    ys = [r[1] for r in first] + [r[1] + r[3] for r in first]
    assert_allclose((max(ys) - min(ys)) / PT, sticker.MARKER_SIDE_MM, atol=1e-3)
    assert len(sticker.sheet_origins_mm()) >= 20


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) is not installed")
def test_pdf_rendered_at_known_dpi_marker_measures_12_mm(tmp_path):
    dpi = 300
    (tmp_path / "s.pdf").write_bytes(sticker.sticker_pdf())
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pnggray", f"-r{dpi}",
                    f"-sOutputFile={tmp_path / 'p.png'}", str(tmp_path / "s.pdf")], check=True, timeout=60)
    page = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_GRAYSCALE)
    assert page.shape == (round(297 / 25.4 * dpi), round(210 / 25.4 * dpi))
    ox, oy = sticker.sheet_origins_mm()[0]
    px = dpi / 25.4
    crop = page[int(oy * px) - 20: int((oy + 25) * px) + 20, int(ox * px) - 20: int((ox + 40) * px) + 20]
    found = _detect(crop)
    assert set(found) == set(sticker.MARKER_IDS)
    for corners in found.values():
        sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
        assert_allclose(sides / px, sticker.MARKER_SIDE_MM, rtol=0.01)


def test_local_scale_of_a_plain_scaling():
    H = np.diag([4.0, 4.0, 1.0])
    assert_allclose(sticker.local_scale(H), 0.25)
    tilted = sticker.perspective_homography(width_px=400, centre=(320, 240), tilt_deg=30, focal_px=1e6)
    # a far camera: the sticker spans 400 px across; one direction foreshortened by cos 30°
    assert_allclose(sticker.local_scale(tilted), 0.1 / np.sqrt(np.cos(np.deg2rad(30))), rtol=1e-3)


def test_place_sticker_covers_its_outline(make_skin):
    image, _ = make_skin(3, (400, 560))
    H = sticker.perspective_homography(width_px=200, centre=(280, 200), rotation_deg=20, tilt_deg=25)
    photo, mask = sticker.place_sticker(image, H)
    corners = np.array([[0, 0], [40, 0], [40, 25], [0, 25]], float)
    px = cv2.perspectiveTransform(corners[None], H)[0]
    expected = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(expected, np.round(px).astype(np.int32), 1)
    assert abs(int(mask.sum()) - int(expected.sum())) < 0.03 * expected.sum()
    assert (photo[~mask & ~cv2.dilate(expected, np.ones((5, 5))).astype(bool)]
            == image[~mask & ~cv2.dilate(expected, np.ones((5, 5))).astype(bool)]).all()
    with pytest.raises(ValueError):
        sticker.place_sticker(image.astype(float), H)
