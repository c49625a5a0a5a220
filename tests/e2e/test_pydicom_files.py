"""Every DICOM file bundled with pydicom, end to end under gunicorn.

STOW with the file's exact bytes, then with ``dicomweb-client`` as an independent
client: QIDO finds it, WADO-RS with ``transfer-syntax=*`` gives the same bytes back,
and the instance metadata equals pydicom's own reading of the file element by
element, BulkDataURIs resolving to the right bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.dicom_compare import ALL_FILES, assert_same, unparseable
from tests.e2e.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # pydicom's bundled files reuse SOP Instance UIDs across variants of one image: each
    # file must replace the previous one to be retrieved as itself.
    srv = Server(tmp_path_factory.mktemp("files"), pin_host=True,
                 extra={"OverwriteInstances": True}).start()
    yield srv
    srv.stop()


def stow(server: Server, data: bytes) -> requests.Response:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return requests.post(f"{server.root}/studies", data=body,
                         headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
                         timeout=60)


def referenced(answer: dict[str, Any]) -> tuple[str, str, str] | None:
    items = answer.get("00081199", {}).get("Value", [])
    if not items:
        return None
    url = items[0]["00081190"]["Value"][0]
    parts = url.split("/studies/", 1)[1].split("/")
    return parts[0], parts[2], parts[4]


def raw_instance(server: Server, st: str, se: str, sop: str) -> bytes:
    """The stored bytes, the multipart answer decoded by dicomweb-client's own parser."""
    client = DICOMwebClient(server.root)
    url = f"{server.root}/studies/{st}/series/{se}/instances/{sop}"
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    response = requests.get(url, headers={"Accept": accept}, timeout=60)
    assert response.status_code == 200
    (body,) = client._decode_multipart_message(response, stream=False)
    return bytes(body)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_bundled_file_end_to_end(server: Server, path: Path) -> None:
    data = path.read_bytes()
    r = stow(server, data)
    assert r.status_code in (200, 400), r.text
    answer = r.json()
    if r.status_code == 400:
        # Cleanly rejected: a FailedSOPSequence says why, nothing was stored.
        assert answer["00081198"]["Value"][0]["00081197"]["Value"][0] in (0xC000, 0x0110)
        assert not answer["00081199"].get("Value")
        return
    st, se, sop = referenced(answer) or pytest.fail("no ReferencedSOPSequence item")
    client = DICOMwebClient(server.root)

    found = client.search_for_instances(study_instance_uid=st, series_instance_uid=se)
    assert sop in [f["00080018"]["Value"][0] for f in found]
    studies = client.search_for_studies(search_filters={"StudyInstanceUID": st})
    assert len(studies) == 1

    assert raw_instance(server, st, se, sop) == data

    meta = client.retrieve_instance_metadata(st, se, sop)
    bulk: dict[str, bytes] = {}

    def fetch(tag: object, vr: str, uri: str) -> bytes:
        if uri not in bulk:
            (value,) = client.retrieve_bulkdata(uri)
            bulk[uri] = bytes(value)
        return bulk[uri]

    skip = unparseable(meta)
    back = pydicom.Dataset.from_json(json.dumps({k: v for k, v in meta.items()
                                                 if k not in skip}), fetch)
    full = pydicom.dcmread(path, force=True)
    assert_same(back, full, path.name, skip)
