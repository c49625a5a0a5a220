"""Studies for the browser tests: small CTs with names and images a user can tell apart."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import requests

from app.dicom.identifiers import orthanc_ids
from tests.api.data import ct, uid
from tests.conftest import dicom_bytes
from tests.e2e.server import Server

SIZE = 64  # pixels per side: a visible image, small files


@dataclass(frozen=True)
class Study:
    """A generated study: its identifiers and the files of each series."""

    patient_name: str
    patient_id: str
    accession: str
    date: str
    uid: str
    series: dict[str, list[tuple[str, bytes]]]  # SeriesInstanceUID → [(SOPInstanceUID, file)]

    @property
    def orthanc_id(self) -> str:
        return orthanc_ids(self.patient_id, self.uid, "", "")[1]

    @property
    def instances(self) -> int:
        return sum(len(files) for files in self.series.values())

    @classmethod
    def make(cls, patient_name: str, patient_id: str, *, series: int = 1, instances: int = 2,
             date: str = "20240102") -> Study:
        """A study whose images are a bright disc on a ramp (never blank when rendered);
        patient ids get a random suffix so that modules never share one."""
        patient_id = f"{patient_id}-{uuid.uuid4().hex[:6]}"
        accession = "A" + uuid.uuid4().hex[:8].upper()
        study, files = uid(), {}
        yy, xx = np.mgrid[:SIZE, :SIZE]
        for s in range(1, series + 1):
            series_uid, items = uid(), []
            for number in range(1, instances + 1):
                disc = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / (2 + number)) ** 2)
                pixels = (xx * 30 + disc * 2000).astype(np.uint16).reshape(1, SIZE, SIZE)
                ds = ct(study, series_uid, number=number, patient=patient_name,
                        patient_id=patient_id, date=date, rows=SIZE, columns=SIZE,
                        pixels=pixels, SeriesNumber=s, SeriesDescription=f"Series {s}",
                        StudyDescription=f"Study of {patient_name}", AccessionNumber=accession,
                        WindowCenter=1200, WindowWidth=2600)
                items.append((ds.SOPInstanceUID, dicom_bytes(ds)))
            files[series_uid] = items
        return cls(patient_name, patient_id, accession, date, study, files)


def stow(server: Server, study: Study, credentials: tuple[str, str] | None = None) -> Study:
    """Store every file of ``study`` on ``server`` with one STOW-RS request."""
    stow_files(server, [data for files in study.series.values() for _, data in files],
               credentials)
    return study


def stow_files(server: Server, files: list[bytes],
               credentials: tuple[str, str] | None = None) -> None:
    """Store DICOM files on ``server`` with one STOW-RS request."""
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
             for data in files]
    answer = requests.post(
        server.root + "/studies", data=b"".join(parts) + f"--{boundary}--".encode(),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={boundary}",
                 "Accept": "application/dicom+json"},
        auth=credentials, timeout=60)
    assert answer.status_code == 200, answer.text
