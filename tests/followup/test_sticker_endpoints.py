"""GET /reference-sticker.pdf and .svg: no login, true size (issue 15)."""
import re
import xml.etree.ElementTree as ET

import pytest

from registration import sticker


@pytest.mark.parametrize("path,mimetype", [("/reference-sticker.pdf", "application/pdf"),
                                           ("/reference-sticker.svg", "image/svg+xml")])
def test_sticker_served_without_login(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "public" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pdf_is_the_a4_sheet(client):
    body = client.get("/reference-sticker.pdf").data
    assert body == sticker.sticker_pdf() and body.startswith(b"%PDF-")
    box = [float(v) for v in re.search(rb"/MediaBox \[([\d. ]+)\]", body).group(1).split()]
    assert abs(box[2] - 595.28) < 0.1 and abs(box[3] - 841.89) < 0.1


def test_svg_states_its_physical_size(client):
    root = ET.fromstring(client.get("/reference-sticker.svg").data)
    assert (root.get("width"), root.get("height")) == ("40mm", "25mm")

