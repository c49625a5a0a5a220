"""DELETE of studies, series and instances (not in PS3.18; as Orthanc and dcm4chee do).

The index is updated first (one transaction), then the blobs are removed: a crash
in between leaves only unreferenced blobs, never an index row without its file.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, json

from app.dicom.identifiers import check_uid
from app.dicom.store import delete_blobs
from app.errors import NotFound
from app.services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("delete", __name__)


def _delete(study: str, series: str | None = None, sop: str | None = None) -> Response:
    check_uid(study, "StudyInstanceUID")
    for uid, what in ((series, "SeriesInstanceUID"), (sop, "SOPInstanceUID")):
        if uid is not None:
            check_uid(uid, what)
    svc = services()
    removed = svc.index.remove(study, series, sop)
    if not removed.instances:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"Accessing an inexistent {what}")
    delete_blobs(svc.storage, removed.storage_keys)
    return Response(json.dumps({"RemovedInstances": removed.instances}),
                    content_type="application/json")


@blueprint.delete("/studies/<study>")
def delete_study(study: str) -> Response:
    return _delete(study)


@blueprint.delete("/studies/<study>/series/<series>")
def delete_series(study: str, series: str) -> Response:
    return _delete(study, series)


@blueprint.delete("/studies/<study>/series/<series>/instances/<sop>")
def delete_instance(study: str, series: str, sop: str) -> Response:
    return _delete(study, series, sop)
