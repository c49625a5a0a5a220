"""Instances for the interoperability tests: pydicom's bundled files and generated CTs.

Each test gets instances with fresh UIDs and its own PatientID, so tests sharing one Orthanc
and one server (module-scoped) never see each other's data. Relabelling re-encodes the
header with pydicom but keeps each file's transfer syntax and pixel data as they are
(encapsulated frames stay compressed).
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import pydicom

from app.dicom.identifiers import orthanc_ids
from tests.api.data import ct, uid
from tests.dicom_compare import DATA

# Real files of several kinds: explicit/implicit VR, RLE, JPEG 2000, multi-frame JPEG
# baseline (30 frames), multi-frame native (15 frames), a structured report (no pixels).
BUNDLED = (
    "CT_small.dcm",            # Explicit VR Little Endian, 128×128 16-bit CT
    "MR_small_RLE.dcm",        # RLE Lossless
    "693_J2KI.dcm",            # JPEG 2000
    "examples_ybr_color.dcm",  # JPEG baseline, 30 frames, YBR_FULL_422
    "rtdose.dcm",              # Implicit VR Little Endian, 15 frames
    "test-SR.dcm",             # SR document
)
MULTI_FRAME = "examples_ybr_color.dcm"


@dataclass(frozen=True)
class Instance:
    """One DICOM file and the identifiers both servers derive from it."""

    name: str
    data: bytes
    patient_id: str
    study: str
    series: str
    sop: str

    @property
    def ids(self) -> tuple[str, str, str, str]:
        """Orthanc ids (patient, study, series, instance): the same on both servers."""
        return orthanc_ids(self.patient_id, self.study, self.series, self.sop)

    @property
    def path(self) -> str:
        """WADO-RS path of the instance under a DICOMweb root."""
        return f"/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def _encode(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _patient() -> str:
    return "IO-" + uuid.uuid4().hex[:10]  # AccessionNumber "ACC" + this fits SH (16)


def bundled_study(names: tuple[str, ...] = BUNDLED) -> list[Instance]:
    """One new study holding the bundled files, one series per file, fresh UIDs."""
    patient, study = _patient(), uid()
    instances = []
    for name in names:
        ds = pydicom.dcmread(DATA / "test_files" / name)
        series, sop = uid(), uid()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        instances.append(Instance(name, _encode(ds), patient, study, series, sop))
    return instances


def generated_series(count: int, *, size: int = 64, frames: int = 1) -> list[Instance]:
    """One new study with one series of ``count`` small CT instances."""
    patient, study, series = _patient(), uid(), uid()
    instances = []
    for number in range(1, count + 1):
        ds = ct(study, series, number=number, patient_id=patient, rows=size, columns=size,
                frames=frames)
        instances.append(Instance(f"ct{number}", _encode(ds), patient, study, series,
                                  ds.SOPInstanceUID))
    return instances
