// The DICOMweb client app ({root}app/client/index.html, Orthanc's path; reference §8):
// pick a remote server, look studies up page by page, open their series, preview, look at
// tags, retrieve into this server with a live progress bar, delete remotely (HasDelete).
// Everything goes through this server's client routes (remote.js); nothing is fetched from
// the internet and every URL is relative to the page.

import {
  ApiError, api, confirmDialog, describe, dialog, formatDate, formatName, formatTag, h,
  pollJob, progressBar, showMessage, tagTable,
} from "../common/common.js";
import { RemoteServer, field, rootUrl } from "./remote.js";

const PAGE_SIZE = 100;
const LAST_SERVER = "dicomweb-client.server"; // localStorage key

const $ = (id) => document.getElementById(id);

/** What the page shows; one lookup and one opened study at a time. */
const state = {
  servers: new Map(), // name → RemoteServer
  server: null, // the RemoteServer picked
  criteria: null, // the last lookup's criteria (paging re-runs it with another offset)
  offset: 0,
  lookupNumber: 0, // answers of an older lookup are dropped
  study: null, // the simplified QIDO row of the opened study
  previewUrl: null, // object URL of the preview shown (revoked when replaced)
  localRoot: new URL("../../../", document.baseURI).href, // fixed by loadInfo()
};

// --------------------------------------------------------------------------------------------
// Messages

/**
 * A user-facing explanation of a failed request about a remote server: this server's JSON
 * Message says what happened (it names the remote); the headline says whose fault it is.
 */
function explain(err, server) {
  const name = server ? `"${server.name}"` : "the remote server";
  if (!(err instanceof ApiError)) return [`Something went wrong`, describe(err)];
  switch (err.status) {
    case 0:
      return ["This server cannot be reached", err.message];
    case 401:
    case 403:
      // A refusal by the remote comes back as 401 without a challenge (app/client/remote.py);
      // a refusal of our own credentials would have made the browser ask for a password.
      return [`The remote server ${name} refused our credentials`, describe(err)];
    case 502:
      // app/client/remote.py: "Cannot reach …" (connection) or "… answered HTTP n" (status).
      return [/cannot reach/i.test(err.message)
        ? `The remote server ${name} is unreachable`
        : `The remote server ${name} answered an error`, describe(err)];
    case 504:
      return [`The remote server ${name} did not answer in time`, describe(err)];
    case 404:
      return [`Not found on the remote server ${name}`, describe(err)];
    default:
      return [err.status >= 500 ? "This server answered an error" : "The request was refused",
              describe(err)];
  }
}

function error(err, context) {
  const [headline, details] = explain(err, state.server);
  return showMessage($("messages"), "error", context ? `${context}: ${headline}` : headline,
                     details);
}

function info(kind, text) {
  return showMessage($("messages"), kind, text);
}

function clearMessages() {
  $("messages").replaceChildren();
}

// --------------------------------------------------------------------------------------------
// Start-up: where the local browser is, and the remote servers

async function loadInfo() {
  try {
    const answer = await api(rootUrl("info"));
    // OrthancApiRoot is relative to the DICOMweb root (reference §1.3).
    state.localRoot = new URL(answer.OrthancApiRoot || "../", rootUrl("")).href;
  } catch (_) {
    // Older servers have no /info: keep the default (the Root one level deep).
  }
  $("local-link").href = state.localRoot;
  $("jobs-link").href = `${state.localRoot}#/jobs`;
}

async function loadServers() {
  const select = $("server");
  let servers;
  try {
    servers = await api(rootUrl("servers?expand"));
  } catch (err) {
    error(err, "The list of remote servers cannot be read");
    return;
  }
  for (const [name, description] of Object.entries(servers || {})) {
    state.servers.set(name, new RemoteServer(name, description || {}));
  }
  $("no-server").classList.toggle("hidden", state.servers.size > 0);
  $("no-server").querySelector(".servers-url").textContent = rootUrl("servers/{name}");
  select.replaceChildren(...[...state.servers.values()].map((server) =>
    h("option", { value: server.name }, `${server.name} — ${server.url}`)));
  // The server picked last time, when it still exists (a convenience; nothing secret).
  const last = localStorage.getItem(LAST_SERVER);
  if (last && state.servers.has(last)) select.value = last;
  select.disabled = state.servers.size === 0;
  $("search").disabled = state.servers.size === 0;
  pickServer();
}

function pickServer() {
  state.server = state.servers.get($("server").value) || null;
  const server = state.server;
  if (server) localStorage.setItem(LAST_SERVER, server.name);
  $("server-info").textContent = server
    ? `${server.url}${server.hasDelete ? " · deleting remote studies is allowed" : ""}`
    : "";
  // Results of another server would be misleading.
  closeSeries();
  $("studies-panel").classList.add("hidden");
  state.criteria = null;
}

// --------------------------------------------------------------------------------------------
// Lookup and paging

function criteriaOfForm() {
  return {
    patientName: $("patient-name").value,
    patientId: $("patient-id").value,
    accession: $("accession").value,
    dateFrom: $("date-from").value,
    dateTo: $("date-to").value,
    studyId: $("study-id").value,
  };
}

async function lookup(offset = 0) {
  const server = state.server;
  if (!server || !state.criteria) return;
  const number = ++state.lookupNumber;
  const button = $("search");
  button.disabled = true;
  $("study-count").textContent = "Searching…";
  try {
    const page = await server.studies(state.criteria, offset, PAGE_SIZE);
    if (number !== state.lookupNumber) return;
    state.offset = offset;
    showStudies(page.studies, page.more);
  } catch (err) {
    if (number !== state.lookupNumber) return;
    $("studies-panel").classList.add("hidden");
    $("study-count").textContent = "The lookup failed.";
    error(err, "The lookup failed");
  } finally {
    if (number === state.lookupNumber) button.disabled = false;
  }
}

function showStudies(studies, more) {
  $("studies-panel").classList.remove("hidden");
  const first = state.offset + 1;
  const last = state.offset + studies.length;
  $("study-count").textContent = studies.length === 0
    ? (state.offset === 0 ? "No study matches." : "No more studies.")
    : state.offset === 0 && !more
      ? `${last} ${last === 1 ? "study" : "studies"} on ${state.server.name}`
      : `Studies ${first}–${last}${more ? " (more on the next pages)" : ""} on ${state.server.name}`;
  $("page-label").textContent = `Page ${Math.floor(state.offset / PAGE_SIZE) + 1}`;
  $("previous").disabled = state.offset === 0;
  $("next").disabled = !more;
  $("studies").replaceChildren(...studies.map(studyRow));
}

function studyRow(study) {
  const uid = field(study, "0020000D");
  const row = h("tr", { dataset: { uid } },
    h("td", {}, formatName(field(study, "00100010"))),
    h("td", {}, field(study, "00100020")),
    h("td", {}, field(study, "00080050")),
    h("td", {}, formatDate(field(study, "00080020"))),
    h("td", {}, field(study, "00081030")),
    h("td", {}, field(study, "00200010")),
    h("td", {}, field(study, "00080061")),
    h("td", { class: "actions" },
      h("button", { class: "small", onclick: () => openSeries(study, row) }, "Open series"),
      h("button", { class: "small secondary", onclick: () => showTags("Study tags", study) },
        "Tags"),
      h("button", { class: "small secondary", onclick: () => retrieve(study) }, "Retrieve"),
      state.server.hasDelete
        ? h("button", { class: "small danger", onclick: () => deleteStudy(study) }, "Delete")
        : null));
  if (state.study && field(state.study, "0020000D") === uid) row.classList.add("selected");
  return row;
}

// --------------------------------------------------------------------------------------------
// Series and preview

function studyLabel(study) {
  const parts = [formatName(field(study, "00100010")) || "(no name)",
                 field(study, "00081030"), formatDate(field(study, "00080020"))];
  return parts.filter(Boolean).join(" — ");
}

async function openSeries(study, row) {
  state.study = study;
  for (const other of $("studies").querySelectorAll("tr.selected")) {
    other.classList.remove("selected");
  }
  if (row) row.classList.add("selected");
  closePreview();
  $("series-panel").classList.remove("hidden");
  $("series-title").textContent = `Series of ${studyLabel(study)}`;
  $("series").replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Loading…")));
  try {
    const series = await state.server.series(field(study, "0020000D"));
    if (state.study !== study) return;
    if (series.length === 0) {
      // Deleted meanwhile (Orthanc's app re-runs the lookup too).
      info("warning", "This study has no series any more on the remote server.");
      closeSeries();
      lookup(state.offset);
      return;
    }
    $("series").replaceChildren(...series.map((item) => seriesRow(study, item)));
  } catch (err) {
    $("series").replaceChildren();
    error(err, "The series cannot be listed");
  }
}

function seriesRow(study, series) {
  const number = field(series, "00200011");
  const description = field(series, "0008103E");
  return h("tr", { dataset: { uid: field(series, "0020000E") } },
    h("td", {}, number),
    h("td", {}, description),
    h("td", {}, field(series, "00080060")),
    h("td", {}, field(series, "00201209")),
    h("td", { class: "actions" },
      h("button", { class: "small", onclick: () => preview(study, series) }, "Preview"),
      h("button", { class: "small secondary", onclick: () => showTags("Series tags", series) },
        "Tags"),
      h("button", { class: "small secondary", onclick: () => retrieve(study, series) },
        "Retrieve"),
      state.server.hasDelete
        ? h("button", { class: "small danger", onclick: () => deleteSeries(study, series) },
            "Delete")
        : null));
}

function closeSeries() {
  state.study = null;
  closePreview();
  $("series-panel").classList.add("hidden");
  $("series").replaceChildren();
}

function closePreview() {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $("preview").classList.add("hidden");
  $("preview-image").removeAttribute("src");
}

async function preview(study, series) {
  closePreview();
  const label = seriesLabel(series);
  const box = $("preview");
  box.classList.remove("hidden");
  $("preview-caption").textContent = `Loading a preview of ${label}…`;
  try {
    const found = await state.server.preview(field(study, "0020000D"),
                                             field(series, "0020000E"));
    if (state.study !== study) return;
    state.previewUrl = URL.createObjectURL(found.blob);
    const image = $("preview-image");
    image.alt = `Preview of ${label}`;
    image.src = state.previewUrl;
    await image.decode().catch(() => {
      throw new Error("the answer is not an image the browser can show");
    });
    $("preview-caption").textContent =
      `${label} — instance ${found.index + 1} of ${found.count}`;
  } catch (err) {
    closePreview();
    if (cannotTalk(err)) {
      error(err, `No preview of ${label}`);
    } else {
      showMessage($("messages"), "error",
                  `The remote server cannot produce a preview of ${label}`, describe(err));
    }
  }
}

/** A failure to talk with the remote at all (vs. an answer that is an error). */
function cannotTalk(err) {
  return err instanceof ApiError && ([0, 401, 403, 504].includes(err.status)
    || (err.status === 502 && /cannot reach/i.test(err.message)));
}

function seriesLabel(series) {
  const number = field(series, "00200011");
  const description = field(series, "0008103E");
  const name = number ? `series ${number}` : "series";
  return description ? `${name} (${description})` : name;
}

// --------------------------------------------------------------------------------------------
// Tags

function showTags(title, row) {
  const rows = Object.keys(row).sort().map((tag) =>
    [formatTag(tag), row[tag].Name, field(row, tag)]);
  dialog(title, tagTable(rows), [["Close", null, "secondary"]]);
}

// --------------------------------------------------------------------------------------------
// Retrieve: an asynchronous job, polled until it ends

async function retrieve(study, series) {
  const server = state.server;
  const studyUid = field(study, "0020000D");
  const seriesUid = series ? field(series, "0020000E") : null;
  const what = series ? `${seriesLabel(series)} of ${studyLabel(study)}` : studyLabel(study);
  const bar = progressBar("Starting…");
  const status = h("span", { class: "job-status" }, "");
  const item = h("div", { class: "job", dataset: { testid: "job" } },
    h("span", { class: "job-label" }, `Retrieve ${what} from ${server.name}`), bar, status);
  $("jobs").prepend(item);
  $("jobs-panel").classList.remove("hidden");
  try {
    const jobUrl = await server.retrieve(studyUid, seriesUid);
    const job = await pollJob(jobUrl, (current) => {
      bar.set(current.Progress || 0, `${current.State} — ${current.Progress || 0} %`);
    });
    if (job.State === "Success") {
      retrieved(job, status, bar, studyUid, seriesUid);
    } else {
      item.classList.add("failed");
      bar.set(job.Progress || 0, "Failure");
      status.textContent = `Failed: ${[job.ErrorDescription, job.ErrorDetails]
        .filter(Boolean).join(" — ")}`;
    }
  } catch (err) {
    item.classList.add("failed");
    bar.set(0, "Not started");
    const [headline, details] = explain(err, server);
    status.textContent = `${headline}. ${details}`;
  }
}

function retrieved(job, status, bar, studyUid, seriesUid) {
  const count = Number((job.Content || {}).ReceivedInstancesCount || 0);
  bar.set(100, "Success");
  status.replaceChildren(`${count} instance${count === 1 ? "" : "s"} retrieved · `,
                         h("a", { href: localLink(studyUid, seriesUid) },
                           "Open in the local browser"));
}

/** The local browser's page of a study or series: its routes use the UIDs (browser.js). */
function localLink(studyUid, seriesUid) {
  const series = seriesUid ? `/series/${seriesUid}` : "";
  return `${state.localRoot}#/studies/${studyUid}${series}`;
}

// --------------------------------------------------------------------------------------------
// Delete (only offered with HasDelete)

async function deleteStudy(study) {
  const server = state.server;
  const ok = await confirmDialog("Delete a remote study",
    `Delete the study "${studyLabel(study)}" (patient ID ${field(study, "00100020")}) from ` +
    `the remote server "${server.name}"? This cannot be undone.`);
  if (!ok) return;
  try {
    await server.delete(field(study, "0020000D"));
    info("success", `The study "${studyLabel(study)}" was deleted from ${server.name}.`);
    if (state.study === study) closeSeries();
    lookup(state.offset);
  } catch (err) {
    error(err, "The study cannot be deleted");
  }
}

async function deleteSeries(study, series) {
  const server = state.server;
  const label = seriesLabel(series);
  const ok = await confirmDialog("Delete a remote series",
    `Delete ${label} of "${studyLabel(study)}" from the remote server "${server.name}"? ` +
    "This cannot be undone.");
  if (!ok) return;
  try {
    await server.delete(field(study, "0020000D"), field(series, "0020000E"));
    info("success", `The ${label} was deleted from ${server.name}.`);
    openSeries(study, $("studies").querySelector("tr.selected"));
  } catch (err) {
    error(err, "The series cannot be deleted");
  }
}

// --------------------------------------------------------------------------------------------
// Wiring

function wire() {
  $("server").addEventListener("change", pickServer);
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    clearMessages();
    state.criteria = criteriaOfForm();
    closeSeries();
    lookup(0);
  });
  $("lookup").addEventListener("reset", () => {
    clearMessages();
    closeSeries();
    state.criteria = null;
    state.lookupNumber += 1;
    $("studies-panel").classList.add("hidden");
    $("search").disabled = state.servers.size === 0;
  });
  $("previous").addEventListener("click", () => lookup(Math.max(0, state.offset - PAGE_SIZE)));
  $("next").addEventListener("click", () => lookup(state.offset + PAGE_SIZE));
}

wire();
loadInfo();
loadServers();
