"""Small datasets generated in code for the API tests."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.conftest import dicom_bytes

PREFIX = "1.2.826.0.1.3680043.10.543."


def ct(study: str, series: str, sop: str | None = None, *, number: int = 1,
       patient: str = "DOE^JOHN", patient_id: str = "P1", date: str = "20240102",
       modality: str = "CT", frames: int = 1, rows: int = 4, columns: int = 4,
       pixels: np.ndarray | None = None, **extra: object) -> Dataset:
    """A small valid CT (or any modality) instance with native 16-bit pixels (``pixels``:
    uint16 values shaped (frames, rows, columns), else a ramp)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = sop or generate_uid(PREFIX)
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient, patient_id, \
        "19700101", "M"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, "101500", "ACC" + patient_id
    ds.StudyID, ds.StudyDescription = "1", "Chest"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, 1, "Axial"
    ds.InstanceNumber = number
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixels is None:
        pixels = (np.arange(rows * columns * frames, dtype=np.uint16) * 7 % 4096)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def ct_bytes(*args: object, **kwargs: object) -> bytes:
    return dicom_bytes(ct(*args, **kwargs))  # type: ignore[arg-type]


def uid() -> str:
    return generate_uid(PREFIX)


__all__ = ["ct", "ct_bytes", "pydicom", "uid"]
