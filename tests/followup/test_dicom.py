"""Photos as DICOM: the pure builder, its check by a real implementation (dciodvfy), the API route and the CLI."""
import io
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import UID, DermoscopicPhotographyImageStorage, JPEGBaseline8Bit, VLPhotographicImageStorage

from followup import demo
from followup.db import db
from followup.dicom.builder import DicomPhoto, build_dicom
from followup.intake.cleaning import clean_photo
from followup.intake.photos import receive_photo
from followup.models import AuditEvent, Site
from followup.records.body_sites import read_body_site
from followup.storage import storage
from tests.conftest import jpeg_bytes

PHOTO = DicomPhoto(
    namespace="https://scarwatch.example.org", patient_id=12, patient_name="Zoë O'Neil", birth_date=date(1950, 2, 3),
    site_id=34, body_site=read_body_site("left forearm"), diagnosis="melanoma", photo_id=56, kind="followup",
    modality="clinical", acquired=datetime(2026, 5, 1, 10, 30, 15), study_started=datetime(2026, 4, 1, 9, 0),
)


@pytest.fixture(scope="module")
def stored_jpeg() -> bytes:
    """A photo as intake stores it (metadata-free baseline JPEG)."""
    return clean_photo(jpeg_bytes(320, 240, seed=3), max_pixels=10**8).data


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def only_frame(ds: pydicom.Dataset) -> bytes:
    [frame] = generate_frames(ds.PixelData, number_of_frames=1)
    return frame


# --- the builder ---------------------------------------------------------------------------------------------

def test_a_clinical_photo_is_a_vl_photographic_image_with_patient_region_and_acquisition(stored_jpeg):
    ds = read(build_dicom(PHOTO, stored_jpeg))
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.SOPClassUID == VLPhotographicImageStorage and ds.Modality == "XC"
    assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == ("Zoë O'Neil", "12", "19500203")
    [region] = ds.AnatomicRegionSequence
    assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == ("14975008", "SCT", "Forearm")
    assert [m.CodeValue for m in region.AnatomicRegionModifierSequence] == ["7771000"]  # left
    assert ds.Laterality == "L"
    assert (ds.AcquisitionDateTime, ds.ContentDate, ds.ContentTime) == ("20260501103015", "20260501", "103015")
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (240, 320, 3)
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.LossyImageCompression == "01"
    assert "PixelSpacing" not in ds  # no measured scale yet
    assert "left forearm" in ds.StudyDescription


def test_a_dermoscopic_photo_is_a_dermoscopic_photography_image(stored_jpeg):
    ds = read(build_dicom(replace(PHOTO, modality="dermoscopy"), stored_jpeg))
    assert ds.SOPClassUID == DermoscopicPhotographyImageStorage and ds.Modality == "DMS"


def test_the_pixel_data_is_the_stored_jpeg_byte_for_byte(stored_jpeg):
    frame = only_frame(read(build_dicom(PHOTO, stored_jpeg)))
    # An odd-length JPEG gets the one padding byte DICOM asks for after its end-of-image marker.
    assert frame[:len(stored_jpeg)] == stored_jpeg and frame[len(stored_jpeg):] in (b"", b"\x00")


def test_uids_are_stable_one_study_per_site_one_series_per_day_and_modality(stored_jpeg):
    first, again = build_dicom(PHOTO, stored_jpeg), build_dicom(PHOTO, stored_jpeg)
    assert first == again
    ds = read(first)
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert UID(uid).is_valid and re.fullmatch(r"2\.25\.[1-9]\d*", uid)
    same_day = read(build_dicom(replace(PHOTO, photo_id=57, acquired=datetime(2026, 5, 1, 18, 0)), stored_jpeg))
    next_visit = read(build_dicom(replace(PHOTO, photo_id=58, acquired=datetime(2026, 8, 1, 9, 0)), stored_jpeg))
    dermoscopy = read(build_dicom(replace(PHOTO, photo_id=59, modality="dermoscopy"), stored_jpeg))
    other_site = read(build_dicom(replace(PHOTO, site_id=35, photo_id=60), stored_jpeg))
    elsewhere = read(build_dicom(replace(PHOTO, namespace="https://other.example.org"), stored_jpeg))
    assert same_day.StudyInstanceUID == next_visit.StudyInstanceUID == ds.StudyInstanceUID
    assert same_day.SeriesInstanceUID == ds.SeriesInstanceUID != next_visit.SeriesInstanceUID
    assert dermoscopy.SeriesInstanceUID != ds.SeriesInstanceUID  # a series holds one modality
    assert other_site.StudyInstanceUID != ds.StudyInstanceUID
    assert len({ds.SOPInstanceUID, same_day.SOPInstanceUID, next_visit.SOPInstanceUID,
                dermoscopy.SOPInstanceUID, elsewhere.SOPInstanceUID}) == 5


@pytest.mark.parametrize("modality", ["clinical", "dermoscopy"])
def test_no_gps_or_device_data(stored_jpeg, modality):
    ds = read(build_dicom(replace(PHOTO, modality=modality), stored_jpeg))
    # Group 0016 holds the EXIF-like camera and GPS attributes (VL Photographic Acquisition and Geolocation) and
    # the dermatoscope's optics, which the dermoscopy IOD wants present: none has a value.
    assert not [e for e in ds.iterall() if e.tag.group == 0x0016 and not e.is_empty]
    assert all(ds.get(k, "") in ("", "UNKNOWN") for k in
               ("Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions", "StationName"))
    assert "DeviceSequence" not in ds and "DeviceUID" not in ds


@pytest.mark.parametrize("text, code, laterality", [
    ("left ear", "117590005", "L"), ("right upper arm", "40983000", "R"), ("back of right hand", "85562004", "R"),
    ("Left  Forearm", "14975008", "L"), ("neck", "45048000", None), ("upper back", "77568009", None),
    ("lower leg", "30021000", None), ("behind the tattoo", None, None), ("left and right cheek", "60819002", None),
])
def test_body_sites_read_as_snomed_regions_with_laterality(text, code, laterality):
    site = read_body_site(text)
    assert (site.region.code if site.region else None, site.laterality) == (code, laterality)


def test_an_unknown_site_keeps_its_words_and_no_code(stored_jpeg):
    ds = read(build_dicom(replace(PHOTO, body_site=read_body_site("behind the tattoo")), stored_jpeg))
    assert "AnatomicRegionSequence" not in ds and "behind the tattoo" in ds.StudyDescription
    assert ds.Laterality == ""  # unknown, as the standard lets it be said


def test_an_unpaired_region_states_no_laterality(stored_jpeg):
    assert "Laterality" not in read(build_dicom(replace(PHOTO, body_site=read_body_site("neck")), stored_jpeg))


def test_what_is_not_a_baseline_jpeg_is_refused(stored_jpeg):
    progressive = io.BytesIO()
    Image.open(io.BytesIO(stored_jpeg)).save(progressive, format="JPEG", progressive=True)
    png = io.BytesIO()
    Image.open(io.BytesIO(stored_jpeg)).save(png, format="PNG")
    for data in (progressive.getvalue(), png.getvalue()):
        with pytest.raises(ValueError):
            build_dicom(PHOTO, data)
    with pytest.raises(ValueError, match="modality"):
        build_dicom(replace(PHOTO, modality="xray"), stored_jpeg)


# --- checked by a real implementation: dciodvfy (Debian dicom3tools) ------------------------------------------

dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) not installed")


def verify(data: bytes, tmp_path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's error and warning lines for one file."""
    path = tmp_path / "photo.dcm"
    path.write_bytes(data)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


@dciodvfy
@pytest.mark.parametrize("modality", ["clinical", "dermoscopy"])
@pytest.mark.parametrize("body_site", ["left forearm", "neck", "chest", "back of right hand", "behind the tattoo"])
def test_dciodvfy_finds_no_errors_in_generated_photos(tmp_path, stored_jpeg, modality, body_site):
    photo = replace(PHOTO, modality=modality, body_site=read_body_site(body_site), birth_date=None)
    errors, _ = verify(build_dicom(photo, stored_jpeg), tmp_path)
    assert errors == []


@dciodvfy
@pytest.mark.parametrize("story", demo.STORIES, ids=[story.photo for story in demo.STORIES])
def test_dciodvfy_finds_no_errors_in_the_demos_photos(tmp_path, story):
    stored = clean_photo((demo.PHOTOS / f"{story.photo}.jpg").read_bytes(), max_pixels=10**8).data
    photo = replace(PHOTO, patient_name=story.name, body_site=read_body_site(story.body_site),
                    diagnosis=story.diagnosis)
    errors, _ = verify(build_dicom(photo, stored), tmp_path)
    assert errors == []


# --- the API route and the command line ----------------------------------------------------------------------

@pytest.fixture
def photo(app, world, site_id):
    photo = receive_photo(db.session.get(Site, site_id), jpeg_bytes(), kind="baseline", enqueue=False,
                          modality="dermoscopy")
    db.session.commit()
    return photo


def dicom_events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(db.select(AuditEvent).where(AuditEvent.action == action)).scalars())


def test_the_api_serves_the_photo_as_dicom_and_audits_it(client, world, photo, patient_id):
    response = client.get(f"/api/v1/photos/{photo.id}/dicom", headers=world.headers(client, "derm@north.test"))
    assert response.status_code == 200 and response.mimetype == "application/dicom"
    assert "no-store" in response.headers["Cache-Control"]
    ds = read(response.data)
    assert ds.SOPClassUID == DermoscopicPhotographyImageStorage and ds.PatientID == str(patient_id)
    jpeg = storage().get(photo.storage_key)
    assert only_frame(ds)[:len(jpeg)] == jpeg
    [event] = dicom_events("export_photo_dicom")
    assert (event.user_id, event.record_type, event.record_id) == (world.derm.id, "photo", photo.id)
    assert [s.patient_id for s in event.subjects] == [patient_id]


def test_the_api_route_needs_a_token_of_the_photos_clinic(client, world, photo):
    assert client.get(f"/api/v1/photos/{photo.id}/dicom").status_code == 401
    other = client.get(f"/api/v1/photos/{photo.id}/dicom", headers=world.headers(client, "derm@south.test"))
    assert other.status_code == 404 and other.get_json()["error"]["code"]
    assert client.get("/api/v1/photos/99999999999/dicom",
                      headers=world.headers(client, "derm@north.test")).status_code == 404
    assert dicom_events("export_photo_dicom") == []


def test_the_route_is_in_the_openapi_document(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/photos/{photo_id}/dicom"]["get"]
    assert "application/dicom" in operation["responses"]["200"]["content"]


def test_export_dicom_writes_one_file_per_photo_and_is_audited(runner, tmp_path, world, site_id, photo):
    second = receive_photo(db.session.get(Site, site_id), jpeg_bytes(seed=1), kind="followup", enqueue=False)
    db.session.commit()
    out = tmp_path / "new" / "dicom"
    result = runner.invoke(args=["export-dicom", "--site", str(site_id), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == sorted([f"photo-{photo.id}.dcm", f"photo-{second.id}.dcm"])
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({d.StudyInstanceUID for d in datasets}) == 1
    assert {d.Modality for d in datasets} == {"DMS", "XC"}  # the follow-up was never analysed: clinical
    [event] = dicom_events("export_dicom")
    assert (event.actor, event.record_type, event.record_id) == ("cli", "site", site_id)


@pytest.mark.parametrize("site", ["999999", "99999999999", "-1"])
def test_export_dicom_names_a_missing_site(runner, tmp_path, world, site):
    result = runner.invoke(args=["export-dicom", "--site", site, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--site" in result.output
    assert not (tmp_path / "x").exists()
