// The jobs view: Orthanc's /jobs (docs/jobs.md), refreshed every second while a job is
// pending or running, with the actions each state allows.
import { api, h, progressBar } from "../common/common.js";
import { notify, reportError } from "./context.js";

const REFRESH_MS = 1000;
const ACTIVE = new Set(["Pending", "Running"]);
// Which actions Orthanc's JobsRegistry accepts in which state (docs/jobs.md, "States").
const ACTIONS = {
  Pending: ["pause", "cancel"],
  Running: ["pause", "cancel"],
  Paused: ["resume", "cancel"],
  Failure: ["resubmit"],
  Success: [],
};
const LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel", resubmit: "Resubmit" };

export function renderJobs(view) {
  const table = h("div", { "data-testid": "jobs", "aria-live": "polite" },
    h("p", { class: "muted" }, "Loading…"));
  view.append(h("section", { class: "panel", "aria-labelledby": "jobs-title" },
    h("h2", { id: "jobs-title" }, "Jobs"),
    h("p", { class: "muted intro" },
      "Sends to DICOMweb servers and retrieves from them run in the background as jobs. ",
      "A running job can be paused or cancelled; a failed one resubmitted. The list ",
      "refreshes by itself while a job is running."),
    table));
  let timer = null;
  let alive = true;
  const refresh = async () => {
    clearTimeout(timer);
    let jobs;
    try {
      jobs = (await api("jobs?expand")) || [];
    } catch (err) {
      if (!alive) return;
      table.replaceChildren(h("p", { class: "empty" }, "The jobs cannot be listed."));
      reportError("The jobs cannot be listed", err);
      return;
    }
    if (!alive) return;
    table.replaceChildren(jobsTable(jobs.reverse(), refresh)); // newest first
    if (jobs.some((job) => ACTIVE.has(job.State))) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return () => { // leaving the view stops the refresh
    alive = false;
    clearTimeout(timer);
  };
}

function jobsTable(jobs, refresh) {
  if (!jobs.length) return h("p", { class: "empty" }, "No job yet: send a study to a DICOMweb server to start one.");
  return h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, ["Type", "State", "Progress", "Created", "Completed", "Content",
      "Error", "Actions"].map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, jobs.map((job) => jobRow(job, refresh))));
}

function jobRow(job, refresh) {
  const bar = progressBar();
  bar.set(job.Progress || 0);
  return h("tr", { "data-job": job.ID, "data-state": job.State },
    h("td", { title: `Job ${job.ID}` }, job.Type),
    h("td", {}, h("span", { class: `state ${job.State}` }, job.State)),
    h("td", {}, bar),
    h("td", {}, formatTime(job.CreationTime)),
    h("td", {}, formatTime(job.CompletionTime)),
    h("td", { class: "content" }, summary(job.Content || {})),
    h("td", {}, job.State === "Failure"
      ? [job.ErrorDescription, job.ErrorDetails ? h("small", { class: "details" }, job.ErrorDetails) : null]
      : ""),
    h("td", { class: "actions" }, (ACTIONS[job.State] || []).map((action) =>
      h("button", { class: `small ${action === "cancel" ? "danger" : "secondary"}`,
                    onclick: () => act(job, action, refresh) }, LABELS[action]))));
}

async function act(job, action, refresh) {
  try {
    await api(`jobs/${encodeURIComponent(job.ID)}/${action}`, { method: "POST", json: {} });
    notify("info", `${LABELS[action]}: asked for the ${job.Type} job.`);
  } catch (err) {
    reportError(`${LABELS[action]} failed`, err);
  }
  refresh();
}

/** A line of what the job did, from its Content (reference §7.5, §7.6). */
function summary(content) {
  const parts = [];
  if (content.Server) parts.push(`to ${content.Server}`);
  if (content.InstancesCount !== undefined) parts.push(`${content.InstancesCount} instance(s)`);
  if (content.ReceivedInstancesCount !== undefined) {
    parts.push(`${content.ReceivedInstancesCount} instance(s) received`);
  }
  const mb = content.NetworkSizeMB ?? content.NetworkUsageMB;
  if (mb !== undefined) parts.push(`${mb} MB`);
  if (parts.length) return parts.join(", ");
  // Another job type: its scalar fields as they are.
  return Object.entries(content).filter(([, v]) => typeof v !== "object")
    .map(([k, v]) => `${k}: ${v}`).join(", ");
}

/** Boost's ISO basic time (UTC), "20261128T010203.123456", in the user's local time. */
function formatTime(text) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(text || "");
  if (!m) return text || "";
  const date = new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  return date.toLocaleString();
}
