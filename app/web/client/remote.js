// What the client app asks of this server about one remote DICOMweb server: the routes of
// docs/client.md (reference §7), with URLs relative to the page so that the app works under
// any DicomWeb Root and behind a reverse proxy path. No DOM here.

import { api } from "../common/common.js";

/** This server's DICOMweb root, relative to {root}app/client/index.html. */
export const ROOT = "../../";

/**
 * The one attribute the studies table shows beyond the default QIDO-RS study attributes
 * (PS3.18 table 6.7.1-2: ModalitiesInStudy and the counts are defaults; the series table's
 * are all defaults, table 6.7.1-2a). One only: the client encodes a list's "," as "%2C",
 * which Orthanc 1.10 does not split (tests/browser/test_client_deployments.py).
 */
const STUDY_FIELD = "00081030"; // StudyDescription

/** Absolute URL of a path under this server's DICOMweb root. */
export function rootUrl(path) {
  return new URL(ROOT + path, document.baseURI).href;
}

/** A value of Orthanc's simplified QIDO answer ({"TAG": {Name, vr, Value}}) as text. */
export function field(row, tag) {
  const attr = row && row[tag];
  return attr && attr.Value !== undefined && attr.Value !== null ? String(attr.Value) : "";
}

/**
 * The QIDO-RS arguments of a study lookup (PS3.18 §8.3.4): the criteria the user typed
 * (empty ones left out: universal matching), a date range, and a page.
 * ``limit`` is one more than the page size: an extra answer tells that a next page exists
 * (Orthanc's app asks for 101 and drops the rest).
 */
export function studyArguments(criteria, offset, pageSize) {
  const args = {
    fuzzymatching: "true",
    limit: String(pageSize + 1),
    offset: String(offset),
    includefield: STUDY_FIELD,
  };
  const put = (tag, text) => {
    const trimmed = (text || "").trim();
    if (trimmed) args[tag] = trimmed;
  };
  put("00100010", criteria.patientName);
  put("00100020", criteria.patientId);
  put("00080050", criteria.accession);
  put("00200010", criteria.studyId);
  put("00080020", dateRange(criteria.dateFrom, criteria.dateTo));
  return args;
}

/** DA range matching (PS3.4 C.2.2.2.5): "a-b", "a-", "-b", or one date. */
export function dateRange(from, to) {
  const a = (from || "").replaceAll("-", "");
  const b = (to || "").replaceAll("-", "");
  if (a && a === b) return a;
  if (!a && !b) return "";
  return `${a}-${b}`;
}

/** One remote server as this server's DICOMweb client sees it. */
export class RemoteServer {
  constructor(name, description) {
    this.name = name;
    this.url = description.Url || "";
    // A user property: "1"/"0" in the public description (reference §7.2).
    this.hasDelete = description.HasDelete === "1" || description.HasDelete === true;
  }

  /** Absolute URL of one of this server's client routes (servers/{name}/{operation}). */
  route(operation) {
    return rootUrl(`servers/${encodeURIComponent(this.name)}/${operation}`);
  }

  /** A QIDO-RS query, simplified (reference §7.4). */
  qido(uri, args = {}) {
    return api(this.route("qido"), { method: "POST", json: { Uri: uri, Arguments: args } });
  }

  /** A page of studies: {studies, more}. */
  async studies(criteria, offset, pageSize) {
    const found = await this.qido("/studies", studyArguments(criteria, offset, pageSize));
    return { studies: found.slice(0, pageSize), more: found.length > pageSize };
  }

  /** The series of a study, by series number. */
  async series(studyUid) {
    const found = await this.qido(`/studies/${studyUid}/series`);
    const number = (row) => Number.parseInt(field(row, "00200011"), 10);
    return found.sort((a, b) => (number(a) || 0) - (number(b) || 0));
  }

  /** The remote answer as it comes (``/get``): JSON, or a blob with ``as: "blob"``. */
  get(uri, as = "json", headers = {}) {
    return api(this.route("get"), { method: "POST", json: { Uri: uri, HttpHeaders: headers }, as });
  }

  /**
   * A preview of a series: the middle instance (by InstanceNumber) rendered by the remote
   * (PS3.18 §9.5, /rendered: JPEG by default). Resolves with {blob, index, count}.
   */
  async preview(studyUid, seriesUid) {
    const base = `/studies/${studyUid}/series/${seriesUid}`;
    const instances = await this.get(`${base}/instances`, "json",
                                     { Accept: "application/dicom+json" });
    if (!Array.isArray(instances) || instances.length === 0) {
      throw new Error("The remote server lists no instance in this series");
    }
    const number = (item) => {
      const attr = item["00200013"];
      return attr && Array.isArray(attr.Value) ? Number(attr.Value[0]) || 0 : 0;
    };
    const sorted = [...instances].sort((a, b) => number(a) - number(b));
    const index = Math.floor((sorted.length - 1) / 2);
    const sop = sorted[index]["00080018"].Value[0];
    const blob = await this.get(`${base}/instances/${sop}/rendered`, "blob");
    return { blob, index, count: sorted.length };
  }

  /**
   * Start copying a study or a series here (reference §7.6): an asynchronous job.
   * Resolves with the absolute URL of the job, whose ``Path`` is relative to the request.
   */
  async retrieve(studyUid, seriesUid) {
    const resource = seriesUid ? { Study: studyUid, Series: seriesUid } : { Study: studyUid };
    const url = this.route("retrieve");
    const job = await api(url, { method: "POST",
                                 json: { Resources: [resource], Asynchronous: true } });
    return new URL(job.Path, url).href;
  }

  /** Delete a remote study, or one of its series (reference §7.7; needs HasDelete). */
  delete(studyUid, seriesUid) {
    const body = seriesUid
      ? { Level: "Series", StudyInstanceUID: studyUid, SeriesInstanceUID: seriesUid }
      : { Level: "Study", StudyInstanceUID: studyUid };
    return api(this.route("delete"), { method: "POST", json: body });
  }
}
