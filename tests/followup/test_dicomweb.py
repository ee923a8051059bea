"""The push to a DICOMweb archive (STOW-RS): a round trip through a real Orthanc on loopback (Debian `orthanc` and
`orthanc-dicomweb`; skipped without them), retries with a visible state, and nothing without DICOMWEB_URL."""
import email.parser
import email.policy
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import generate_frames

from followup.db import db, utcnow
from followup.dicom.dicomweb import TRIES, push_due, retry_delay
from followup.dicom.export import photo_dicom
from followup.intake.photos import receive_photo
from followup.models import DicomPush, Site
from followup.outreach import scheduler
from followup.storage import storage
from tests.conftest import jpeg_bytes

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc with its DICOMweb plugin, local connections only; yields its DICOMweb base URL."""
    if shutil.which("Orthanc") is None or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc with its DICOMweb plugin (Debian orthanc, orthanc-dicomweb) not installed")
    folder = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = folder / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "scarwatch-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": port, "DicomServerEnabled": False, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }))
    process = subprocess.Popen(["Orthanc", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/system", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("Orthanc did not start")
        yield f"{base}/dicom-web"
    finally:
        process.terminate()
        process.wait(timeout=20)


def accepted_photo(site_id: int, seed: int = 0):
    photo = receive_photo(db.session.get(Site, site_id), jpeg_bytes(seed=seed), kind="baseline", enqueue=False)
    photo.status = "done"
    db.session.commit()
    return photo


def qido(url: str) -> list[dict]:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/dicom+json"})) as r:
        return json.loads(r.read() or b"[]")


def wado_instance(url: str) -> pydicom.Dataset:
    """WADO-RS: the instance as stored (``transfer-syntax=*``: no transcoding), out of its multipart answer."""
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept})) as response:
        head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.read())
    [part] = list(message.iter_parts())
    return pydicom.dcmread(io.BytesIO(part.get_payload(decode=True)))


def test_a_photo_goes_to_orthanc_and_comes_back_with_the_same_pixels(app, client, world, site_id, patient_id,
                                                                     orthanc):
    app.config["DICOMWEB_URL"] = orthanc
    photo = accepted_photo(site_id)
    now = utcnow()
    assert push_due(now) == {"dicom_queued": 1, "dicom_sent": 1}
    assert push_due(now) == {}  # sent once
    push = db.session.execute(db.select(DicomPush)).scalar_one()
    assert (push.state, push.attempts, push.last_error) == ("sent", 1, None)

    # QIDO-RS finds the study by patient and the instance in it; WADO-RS returns the stored JPEG. (Orthanc lives
    # for the module: earlier tests' instances may be there too.)
    expected = pydicom.dcmread(io.BytesIO(photo_dicom(photo)))
    study_uid, series_uid, instance_uid = (expected.StudyInstanceUID, expected.SeriesInstanceUID,
                                           expected.SOPInstanceUID)
    assert study_uid in {s["0020000D"]["Value"][0] for s in qido(f"{orthanc}/studies?PatientID={patient_id}")}
    [instance] = qido(f"{orthanc}/studies/{study_uid}/instances?SOPInstanceUID={instance_uid}")
    assert instance["0020000E"]["Value"][0] == series_uid
    ds = wado_instance(f"{orthanc}/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}")
    [frame] = generate_frames(ds.PixelData, number_of_frames=1)
    jpeg = storage().get(photo.storage_key)
    assert frame[:len(jpeg)] == jpeg and frame[len(jpeg):] in (b"", b"\x00")

    body = client.get(f"/api/v1/photos/{photo.id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["dicom_push"]["state"] == "sent" and body["dicom_push"]["attempts"] == 1


def test_an_unreachable_archive_does_not_hold_up_the_pass(app, site_id):
    app.config["DICOMWEB_URL"] = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    first, second = accepted_photo(site_id, 0), accepted_photo(site_id, 1)
    now = utcnow()
    assert push_due(now) == {"dicom_queued": 2, "dicom_retrying": 1}
    pushes = {p.photo_id: p for p in db.session.execute(db.select(DicomPush)).scalars()}
    # The pass stops at the first photo the archive could not take instead of waiting on each in turn.
    assert (pushes[first.id].attempts, pushes[second.id].attempts) == (1, 0)
    assert push_due(now + timedelta(seconds=30)) == {"dicom_retrying": 1}  # the second photo's turn
    assert pushes[second.id].attempts == 1


def test_a_failing_push_is_retried_with_growing_waits_then_marked_failed(app, client, world, site_id):
    app.config["DICOMWEB_URL"] = f"http://127.0.0.1:{free_port()}/dicom-web"
    photo = accepted_photo(site_id)
    now = utcnow()
    assert push_due(now) == {"dicom_queued": 1, "dicom_retrying": 1}
    push = db.session.execute(db.select(DicomPush)).scalar_one()
    assert push.next_try_at == now + retry_delay(1) and push.last_error and push.state == "pending"
    assert push_due(now + retry_delay(1) - timedelta(seconds=1)) == {}  # not due yet
    for attempt in range(2, TRIES + 1):
        now += retry_delay(attempt - 1)
        assert push_due(now) == ({"dicom_failed": 1} if attempt == TRIES else {"dicom_retrying": 1})
    assert (push.state, push.attempts) == ("failed", TRIES)
    assert push_due(now + timedelta(days=1)) == {}  # given up: staff see it failed

    body = client.get(f"/api/v1/photos/{photo.id}", headers=world.headers(client, "derm@north.test")).get_json()
    assert body["dicom_push"]["state"] == "failed" and body["dicom_push"]["last_error"]


def test_without_dicomweb_url_nothing_is_queued(app, site_id):
    assert not app.config["DICOMWEB_URL"]
    accepted_photo(site_id)
    assert push_due(utcnow()) == {}
    assert db.session.execute(db.select(DicomPush)).first() is None


def test_only_accepted_photos_are_pushed(app, site_id):
    app.config["DICOMWEB_URL"] = f"http://127.0.0.1:{free_port()}/dicom-web"
    receive_photo(db.session.get(Site, site_id), jpeg_bytes(), kind="baseline", enqueue=False)  # still queued
    db.session.commit()
    assert push_due(utcnow()) == {}


def test_the_schedulers_minute_sweep_pushes(app, site_id, orthanc):
    app.config["DICOMWEB_URL"] = orthanc
    accepted_photo(site_id, 2)
    summary = scheduler.ReminderScheduler(app).sweep()
    assert summary["dicom_queued"] == 1 and summary["dicom_sent"] == 1
