// Actions on local studies and series: send to a DICOMweb server (a STOW-RS job of the
// DICOMweb client, reference §7.5) and delete.
import {
  api, confirmDialog, describe, dialog, formatDate, formatName, h, pollJob, progressBar, value,
} from "../common/common.js";
import { dicomweb, notify, reportError } from "./context.js";

/** "the study of DOE, JOHN (2024-01-02)": how messages name a study. */
export function studyLabel(study) {
  const name = formatName(value(study, "00100010")) || "an unnamed patient";
  const date = formatDate(value(study, "00080020"));
  return `the study of ${name}${date ? ` (${date})` : ""}`;
}

/** "series 2 (CT, Chest)": how messages name a series. */
export function seriesLabel(series) {
  const details = [value(series, "00080060"), value(series, "0008103E")].filter(Boolean);
  const number = value(series, "00200011");
  return `series ${number || "without number"}${details.length ? ` (${details.join(", ")})` : ""}`;
}

/**
 * Send a local study or series ("Study" | "Series", its UID) to a DICOMweb server the user
 * picks; the job's progress shows in the activity area until it ends.
 */
export async function sendResource(level, uid, label) {
  let server;
  try {
    server = await chooseServer(label);
  } catch (err) {
    reportError("The DICOMweb servers cannot be listed", err);
    return;
  }
  if (!server) return;
  const transfer = transferRow(`Sending ${label} to ${server}`);
  try {
    const id = await orthancId(level, uid);
    const started = await api(dicomweb(`servers/${encodeURIComponent(server)}/stow`), {
      method: "POST", json: { Resources: [id], Asynchronous: true },
    });
    // The job lives in Orthanc's REST API at the server root, i.e. beside this page.
    const job = await pollJob(`jobs/${encodeURIComponent(started.ID)}`, (j) => transfer.update(j));
    if (job.State === "Success") {
      const count = (job.Content && job.Content.InstancesCount) || "0";
      notify("success", `Sent ${label} to ${server}: ${count} instance(s).`);
    } else {
      notify("error", `Sending ${label} to ${server} failed: ${job.ErrorDescription || "the job failed"}`,
             job.ErrorDetails || "");
    }
  } catch (err) {
    transfer.fail(describe(err));
    reportError(`Sending ${label} to ${server} failed`, err);
  }
}

/** Ask which configured server to send to; null when cancelled or none is configured. */
async function chooseServer(label) {
  const servers = (await api(dicomweb("servers?expand"))) || {};
  const names = Object.keys(servers);
  if (names.length === 0) {
    notify("warning", "No DICOMweb server is configured: add one to DicomWeb.Servers in the "
                      + "configuration, then try again.");
    return null;
  }
  const select = h("select", { id: "send-server" },
    names.map((name) => h("option", { value: name },
      servers[name].Url ? `${name} — ${servers[name].Url}` : name)));
  const content = h("div", { class: "form" },
    h("label", { for: "send-server" }, "DICOMweb server"), select,
    h("p", { class: "muted" }, `Every instance of ${label} is sent with STOW-RS, as a job: `,
      "its progress shows at the top of the page and on the Jobs page."));
  const answer = await dialog(`Send ${label}`, content,
                              [["Cancel", null, "secondary"], ["Send", "send"]]);
  return answer === "send" ? select.value : null;
}

/** The Orthanc id of a local study or series (the /stow route takes Orthanc ids). */
async function orthancId(level, uid) {
  const found = await api("tools/lookup", { method: "POST", body: uid,
                                            headers: { "Content-Type": "text/plain" } });
  const match = (found || []).find((item) => item.Type === level);
  if (!match) throw new Error(`This ${level.toLowerCase()} is no longer on this server`);
  return match.ID;
}

/** A row of the activity area: a caption and a live progress bar, dismissable once done. */
function transferRow(caption) {
  const bar = progressBar("Starting…");
  const close = h("button", { class: "close", "aria-label": "Dismiss", title: "Dismiss",
                              onclick: () => row.remove() }, "×");
  const row = h("div", { class: "job transfer", "data-testid": "transfer" },
    h("span", { class: "caption" }, caption), bar, close);
  document.getElementById("activity").prepend(row);
  row.update = (job) => {
    bar.set(job.Progress || 0, `${job.State} — ${job.Progress || 0} %`);
    row.dataset.state = job.State;
  };
  row.fail = (text) => {
    bar.set(0, `Failure — ${text}`);
    row.dataset.state = "Failure";
  };
  return row;
}

/** Confirm, then DELETE a local resource (path under the DICOMweb root); true when deleted. */
export async function deleteResource(path, label) {
  const sure = await confirmDialog(`Delete ${label}?`,
    `This removes ${label} from this server, with every instance in it. It cannot be undone.`);
  if (!sure) return false;
  try {
    await api(dicomweb(path), { method: "DELETE" });
  } catch (err) {
    reportError(`Deleting ${label} failed`, err);
    return false;
  }
  notify("success", `Deleted ${label}.`);
  return true;
}
