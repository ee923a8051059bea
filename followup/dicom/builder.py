"""A photo as a DICOM image for a hospital's image archive (PACS), built with pydicom from plain values.

- A clinical (phone) photo is a VL Photographic Image (SOP class 1.2.840.10008.5.1.4.1.1.77.1.4, Modality XC);
  a dermoscopic one a Dermoscopic Photography Image (1.2.840.10008.5.1.4.1.1.77.1.7, Modality DMS), the IOD
  DICOM defines for dermoscopy (PS3.3 A.32.11) with its Dermoscopic Image module.
- The stored JPEG goes in as it is (JPEG Baseline transfer syntax, one encapsulated fragment): no re-encoding,
  so the archive holds the very pixels the analysis saw.
- UIDs are derived (``2.25.<UUID as integer>``, PS3.5 B.2) from the installation's namespace and our ids: the
  same photo gives the same file every time. One study per site, one series per site, day and modality, one
  instance per photo.
- No GPS and no device data: the stored photo has none (intake drops it) and nothing here adds any.
- No pixel spacing: photos carry no measured scale yet.

Dates and times are local times (DICOM's DA/TM carry no zone): the phone's clock when the photo recorded one,
else the time we received it, in the patient's time zone.
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Optional

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DermoscopicPhotographyImageStorage,
    JPEGBaseline8Bit,
    VLPhotographicImageStorage,
)

from followup.records.body_sites import LATERALITY, SNOMED, BodySite

CONTENT_TYPE = "application/dicom"
#: our modality -> (SOP class, DICOM Modality)
SOP_CLASSES = {"clinical": (VLPhotographicImageStorage, "XC"),
               "dermoscopy": (DermoscopicPhotographyImageStorage, "DMS")}
_SOF0, _SOS = 0xC0, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # JPEG markers without a length


@dataclass(frozen=True)
class DicomPhoto:
    """What a DICOM file says about one photo, in plain values (no database)."""

    namespace: str  # names the installation; with the ids it makes the UIDs
    patient_id: int
    patient_name: str
    birth_date: Optional[date]
    site_id: int
    body_site: BodySite
    diagnosis: str
    photo_id: int
    kind: str  # baseline | followup
    modality: str  # clinical | dermoscopy
    acquired: datetime  # local wall-clock time of the photo
    study_started: datetime  # local wall-clock time the site was enrolled


def derived_uid(namespace: str, *parts: object) -> str:
    """``2.25.<int>`` of a name-based UUID (RFC 4122 version 5): stable for the same namespace and parts."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, namespace), name).int}"


def build_dicom(photo: DicomPhoto, jpeg: bytes) -> bytes:
    """The DICOM Part 10 file for ``photo`` with ``jpeg`` (the stored baseline JPEG) as its pixel data.

    Raises
    ------
    ValueError
        When ``jpeg`` is not an 8-bit baseline JPEG of 1 or 3 components, or the modality is unknown.
    """
    if photo.modality not in SOP_CLASSES:
        raise ValueError(f"modality must be one of {', '.join(SOP_CLASSES)}, not {photo.modality!r}")
    width, height, photometric = _jpeg_frame(jpeg)
    sop_class, modality = SOP_CLASSES[photo.modality]
    study_uid = derived_uid(photo.namespace, "study", photo.site_id)
    series_uid = derived_uid(photo.namespace, "series", photo.site_id, photo.acquired.date(), photo.modality)
    instance_uid = derived_uid(photo.namespace, "instance", photo.photo_id)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names are not ASCII everywhere
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance_uid
    # Patient
    ds.PatientName = _person_name(photo.patient_name)
    ds.PatientID, ds.IssuerOfPatientID = str(photo.patient_id), "SCARWATCH"
    ds.PatientBirthDate = _da(photo.birth_date) if photo.birth_date else ""
    ds.PatientSex = ""  # not recorded
    # General Study: the follow-up of one excision site
    ds.StudyInstanceUID, ds.StudyID = study_uid, str(photo.site_id)
    ds.StudyDate, ds.StudyTime = _da(photo.study_started), _tm(photo.study_started)
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.StudyDescription = f"Scar follow-up: {photo.body_site.text}"[:64]  # LO: 64 characters at most
    # General Series: one day's photos of the site in one modality
    ds.SeriesInstanceUID, ds.Modality = series_uid, modality
    ds.SeriesNumber = int(photo.acquired.strftime("%Y%m%d"))
    ds.SeriesDate, ds.SeriesTime = _da(photo.acquired), _tm(photo.acquired)
    _laterality(ds, photo.body_site)
    # General Equipment: type 2, left empty (no device data)
    ds.Manufacturer = ""
    if modality == "DMS":
        _dermoscopy(ds, photo)
    # General Image, VL Image, Acquisition Context
    ds.InstanceNumber = photo.photo_id
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""  # a photo of skin: no patient axes to give
    ds.ContentDate, ds.ContentTime = _da(photo.acquired), _tm(photo.acquired)
    ds.AcquisitionDateTime = photo.acquired.strftime("%Y%m%d%H%M%S")
    ds.ImageComments = f"{photo.kind} photo of the scar after a {photo.diagnosis} excision: {photo.body_site.text}"
    if photo.body_site.region:  # a site the table does not know has its words in the study description only
        ds.AnatomicRegionSequence = [_region(photo.body_site)]
    ds.AcquisitionContextSequence = []
    ds.BurnedInAnnotation = "NO"
    # Image Pixel: the JPEG's own frame
    ds.SamplesPerPixel = 1 if photometric == "MONOCHROME2" else 3
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    # Lossy: intake re-encodes every upload as JPEG.
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{width * height * ds.SamplesPerPixel / len(jpeg):.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, instance_uid
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dermoscopy(ds: Dataset, photo: DicomPhoto) -> None:
    """What the Dermoscopic Photography Image IOD adds: its own frame of reference (one per photo: photos share
    no coordinates), its equipment and its dermoscopic image module. Intake keeps nothing about the dermatoscope,
    so the equipment's required values say "UNKNOWN" and the optics are left empty (type 2)."""
    ds.FrameOfReferenceUID = derived_uid(photo.namespace, "frame", photo.photo_id)
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = ds.ManufacturerModelName = ds.DeviceSerialNumber = ds.SoftwareVersions = "UNKNOWN"
    ds.RecognizableVisualFeatures = "NO"  # a close-up of the skin through a dermatoscope
    ds.LightSourcePolarization = ds.EmitterColorTemperature = ds.ContactMethod = ""
    ds.OpticalMagnificationFactor = ""


def _laterality(ds: Dataset, site: BodySite) -> None:
    """Laterality as the site says it; empty ("unknown") where it does not say and the region is paired or not
    known; absent for an unpaired region (as General Series asks)."""
    if site.laterality:
        ds.Laterality = site.laterality
    elif site.region is None or site.region.paired:
        ds.Laterality = ""


def _region(site: BodySite) -> Dataset:
    """The Anatomic Region Sequence's item: the SNOMED CT region, its laterality as modifier."""
    region = _code(SNOMED, site.region.code, site.region.meaning)
    if site.laterality:
        region.AnatomicRegionModifierSequence = [_code(SNOMED, *LATERALITY[site.laterality])]
    return region


def _code(scheme: str, value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _person_name(name: str) -> str:
    # We keep one free-text name: it goes in whole (DICOM reads a name without "^" as the family name component);
    # the PN delimiters are dropped rather than guessed.
    return " ".join(name.translate(str.maketrans("^=\\", "   ")).split())[:64]


def _da(value: date) -> str:
    return value.strftime("%Y%m%d")


def _tm(value: datetime) -> str:
    return value.strftime("%H%M%S")


def _jpeg_frame(jpeg: bytes) -> tuple[int, int, str]:
    """Width, height and DICOM photometric interpretation of a baseline JPEG, read from its frame header."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("the stored photo is not a JPEG")
    pos, adobe_transform = 2, None
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF:
            raise ValueError("damaged JPEG: expected a marker")
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(jpeg[pos + 2:pos + 4], "big")
        segment = jpeg[pos + 4:pos + 2 + length]
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe_transform = segment[11]
        if marker == _SOS:
            break
        if 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise ValueError("the stored JPEG is not baseline (progressive, extended or lossless)")
        if marker == _SOF0:
            precision, count = segment[0], segment[5]
            height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
            if precision != 8 or count not in (1, 3):
                raise ValueError("the stored JPEG is not 8-bit greyscale or colour")
            if count == 1:
                return width, height, "MONOCHROME2"
            ids = bytes(segment[6 + 3 * i] for i in range(3))
            if ids == b"RGB" or adobe_transform == 0:
                return width, height, "RGB"
            # YBR_FULL_422 whatever the chroma sampling (intake writes 4:4:4): it is the one YCbCr value that
            # JPEG Baseline (PS3.5 table 8.2.1-1) and the VL image IODs allow; the JPEG header states the real
            # sampling, and PS3.3 C.7.6.3.1.2 accepts this use of YBR_FULL_422 for a JPEG stream as harmless.
            return width, height, "YBR_FULL_422"
        pos += 2 + length
    raise ValueError("the stored JPEG has no baseline frame header")
