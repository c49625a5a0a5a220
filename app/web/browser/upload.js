// The upload view: DICOM files from this computer stored with one STOW-RS request
// (PS3.18 §10.5), built in the browser as multipart/related; type="application/dicom".
// A ZIP archive is sent as it is to the server's POST /instances (Orthanc's REST API, at
// the root beside this page), which stores every DICOM file inside (docs/orthanc-api.md).
import { h, progressBar } from "../common/common.js";
import { dicomweb } from "./context.js";

// Store Instances Response Module (PS3.18 §10.5.3, PS3.4 Annex GG).
const REFERENCED = "00081199";
const FAILED = "00081198";
const FAILURE_REASON = "00081197";
const WARNING_REASON = "00081196";
const RETRIEVE_URL = "00081190";
const SOP_INSTANCE = "00081155";

// Storage status codes (PS3.4 B.2.3, PS3.18 Table 10.5.3-1) a user can act upon.
const REASONS = {
  0x0110: "processing failure",
  0x0122: "SOP class not supported",
  0x0124: "not authorized",
  0xa700: "out of resources (the storage is full)",
  0xa770: "out of resources (the storage is full)",
  0xa900: "the data set does not match its SOP class",
  0xc000: "cannot understand it (not a DICOM file?)",
  0xc122: "transfer syntax not supported",
  0xb006: "already stored: the copy on the server was kept",
  0xb007: "stored with coercion of data elements",
};

export function renderUpload(view) {
  const input = h("input", { type: "file", multiple: true, id: "upload-files",
                             accept: ".dcm,.zip,application/dicom,application/zip,*/*" });
  const zone = h("label", { class: "dropzone", for: "upload-files" },
    h("strong", {}, "Drop DICOM files or ZIP archives here"), h("span", {}, "or click to choose files"), input);
  const results = h("div", { "data-testid": "upload-results", "aria-live": "polite" });
  input.addEventListener("change", () => {
    if (input.files.length) upload([...input.files], results).finally(() => { input.value = ""; });
  });
  // The drop zone must cancel dragover for the drop event to fire at all.
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...event.dataTransfer.files];
    if (files.length) upload(files, results);
  });
  view.append(h("section", { class: "panel", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload DICOM files"),
    h("p", { class: "muted intro" },
      "Files are stored on this server with STOW-RS, all in one request; the server says ",
      "which ones it stored and why any was refused. Files of any name can be chosen (.dcm or not). ",
      "A ZIP archive is sent whole: every DICOM file inside is stored, other files are skipped."),
    zone, results));
}

/** One multipart/related body: a part per file, each Content-Type: application/dicom. */
function multipartBody(files) {
  // Math.random, not crypto.randomUUID(): the latter exists only in secure contexts (HTTPS).
  const boundary = `dicomweb-upload-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const parts = [];
  for (const file of files) {
    parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, "\r\n");
  }
  parts.push(`--${boundary}--\r\n`);
  return { boundary, body: new Blob(parts) };
}

/** Whether a file starts with a ZIP signature (PK\3\4, PK\5\6, PK\7\8), as the server
 * decides it: the name need not end in .zip. */
async function isZip(file) {
  const [p, k, a, b] = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  return p === 0x50 && k === 0x4b && [3, 5, 7].includes(a) && b === a + 1;
}

async function upload(files, results) {
  const archives = [];
  const dicom = [];
  for (const file of files) (await isZip(file) ? archives : dicom).push(file);
  results.replaceChildren();
  if (dicom.length) await uploadFiles(dicom, results);
  for (const archive of archives) await uploadArchive(archive, results);
}

function uploading(text, names, results) {
  const bar = progressBar("Uploading…");
  const status = h("div", { class: "upload" },
    h("p", {}, text, h("span", { class: "muted" }, names)), bar);
  results.append(status);
  return { status, bar, onProgress: (percent) => bar.set(percent, `Uploading — ${percent} %`) };
}

async function uploadFiles(files, results) {
  const { status, bar, onProgress } = uploading(`Uploading ${files.length} file(s): `,
                                                files.map((f) => f.name).join(", "), results);
  const { boundary, body } = multipartBody(files);
  const answer = await post(dicomweb("studies"), body, {
    "Content-Type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
    Accept: "application/dicom+json" }, onProgress);
  bar.remove();
  status.append(outcome(files.length, answer));
}

async function uploadArchive(file, results) {
  const { status, bar, onProgress } = uploading("Uploading the archive ", file.name, results);
  // Relative to this page at the server root: works behind a reverse proxy path too.
  const answer = await post("instances", file, { "Content-Type": "application/zip",
                                                 Accept: "application/json" }, onProgress);
  bar.remove();
  status.append(archiveOutcome(file.name, answer));
}

/** POST with XMLHttpRequest rather than fetch(): it reports the upload's progress. */
function post(url, body, headers, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(Math.round(100 * e.loaded / e.total));
    xhr.onload = () => {
      let json = null;
      try { json = JSON.parse(xhr.responseText); } catch (_) { /* not JSON: status line only */ }
      resolve({ status: xhr.status, statusText: xhr.statusText, json });
    };
    xhr.onerror = () => resolve({ status: 0, statusText: "the server cannot be reached", json: null });
    xhr.send(body);
  });
}

/** What the Store Instances answer says, for users: counts, failures and links to studies. */
function outcome(sent, { status, statusText, json }) {
  const box = h("div", { "data-testid": "upload-outcome" });
  const hasModule = json && (json[REFERENCED] || json[FAILED]);
  if (!hasModule) {
    // The whole request was refused (415, 413, 401, ...) or never arrived.
    const why = (json && json.Message) || statusText || "no answer";
    box.append(message("error", status
      ? `The upload was refused: ${why} (HTTP ${status})` : `The upload failed: ${why}`,
      (json && json.Details) || ""));
    return box;
  }
  const stored = (json[REFERENCED] && json[REFERENCED].Value) || [];
  const failed = (json[FAILED] && json[FAILED].Value) || [];
  if (stored.length) {
    box.append(message(failed.length ? "warning" : "success",
      `Stored ${stored.length} of ${sent} file(s).`));
  }
  if (failed.length) {
    box.append(message("error", `${failed.length} of ${sent} file(s) could not be stored.`),
      h("ul", { class: "failures" }, failed.map((item) => h("li", {}, failureText(item)))));
  }
  const warnings = stored.filter((item) => item[WARNING_REASON]);
  if (warnings.length) {
    box.append(h("ul", { class: "warnings" }, warnings.map((item) => h("li", {},
      `${first(item, SOP_INSTANCE)}: ${reason(first(item, WARNING_REASON))}`))));
  }
  const studies = [...new Set(stored.map((item) => studyOf(first(item, RETRIEVE_URL)))
                                    .filter(Boolean))];
  if (studies.length) {
    box.append(h("p", { class: "links" }, studies.length === 1 ? "Open the study: " : "Open the studies: ",
      studies.flatMap((uid, n) => [n ? ", " : "", h("a", { href: `#/studies/${uid}` }, uid)])));
  }
  return box;
}

/** Orthanc's answer to an archive: one {ID, ParentStudy, Status, ...} per stored file. */
function archiveOutcome(name, { status, statusText, json }) {
  const box = h("div", { "data-testid": "upload-outcome" });
  if (status !== 200 || !Array.isArray(json)) {
    const why = (json && json.Message) || statusText || "no answer";
    box.append(message("error", status
      ? `The archive ${name} was refused: ${why} (HTTP ${status})`
      : `The upload of ${name} failed: ${why}`, (json && json.Details) || ""));
    return box;
  }
  const kept = json.filter((item) => item.Status === "AlreadyStored").length;
  const studies = new Set(json.map((item) => item.ParentStudy)).size;
  box.append(message(json.length ? "success" : "warning", json.length
    ? `Stored ${json.length} instance(s) of ${studies} study(ies) from ${name}.`
    : `${name} holds no DICOM file that could be stored.`));
  if (kept) box.append(message("info", `${kept} of them were already stored: the copies on the server were kept.`));
  return box;
}

function failureText(item) {
  const sop = first(item, SOP_INSTANCE);
  return `${sop ? `Instance ${sop}` : "A file"}: ${reason(first(item, FAILURE_REASON))}`;
}

function reason(code) {
  const n = Number(code);
  const hex = Number.isNaN(n) ? String(code) : `0x${n.toString(16).toUpperCase().padStart(4, "0")}`;
  return `${REASONS[n] || "refused"} (status ${hex})`;
}

function first(item, tag) {
  const attr = item && item[tag];
  return attr && Array.isArray(attr.Value) && attr.Value.length ? attr.Value[0] : "";
}

/** The StudyInstanceUID in a RetrieveURL (…/studies/{study}/series/…). */
function studyOf(url) {
  const match = /\/studies\/([0-9.]+)/.exec(url || "");
  return match ? match[1] : "";
}

function message(kind, text, details = "") {
  return h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, text), details ? h("small", { class: "details" }, details) : null);
}
