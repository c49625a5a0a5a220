// One study: its attributes, its series with thumbnails, the instances of an open series
// and a larger preview of one (WADO-RS thumbnail and rendered resources, PS3.18 §9.5).
import {
  api, dialog, formatDate, formatName, formatTag, h, tagTable, value, values,
} from "../common/common.js";
import { deleteResource, sendResource, seriesLabel, studyLabel } from "./actions.js";
import { dicomweb, reportError } from "./context.js";
import { TAG_NAMES } from "./tags.js";

export function renderStudy(view, match) {
  const [, studyUid, seriesUid] = match;
  view.append(h("p", { class: "muted" }, "Loading the study…"));
  show(view, studyUid, seriesUid).catch((err) => {
    view.replaceChildren(backLink());
    reportError("The study cannot be shown", err);
  });
}

async function show(view, studyUid, seriesUid) {
  const found = await api(dicomweb(`studies?StudyInstanceUID=${studyUid}&includefield=all`));
  const study = (found || [])[0];
  if (!study) {
    view.replaceChildren(backLink(), h("section", { class: "panel" },
      h("h2", {}, "Study not found"),
      h("p", { class: "empty" }, `No study ${studyUid} on this server (was it deleted?).`)));
    return;
  }
  const series = sortBy((await api(dicomweb(`studies/${studyUid}/series`))) || [], "00200011");
  const open = series.find((s) => value(s, "0020000E") === seriesUid);
  view.replaceChildren(backLink(), studyPanel(study), seriesPanel(studyUid, series, seriesUid));
  if (open) view.append(instancesPanel(studyUid, open));
}

function backLink() {
  return h("p", {}, h("a", { href: "#/studies" }, "← All studies"));
}

function studyPanel(study) {
  const uid = value(study, "0020000D");
  const label = studyLabel(study);
  const facts = [
    ["Patient", formatName(value(study, "00100010"))],
    ["Patient ID", value(study, "00100020")],
    ["Birth date", formatDate(value(study, "00100030"))],
    ["Sex", value(study, "00100040")],
    ["Study date", formatDate(value(study, "00080020"))],
    ["Accession", value(study, "00080050")],
    ["Study ID", value(study, "00200010")],
    ["Modalities", values(study, "00080061").split("\\").join(", ")],
    ["Series / instances", `${value(study, "00201206")} / ${value(study, "00201208")}`],
    ["Study Instance UID", h("span", { class: "mono" }, uid)],
  ];
  return h("section", { class: "panel", "aria-labelledby": "study-title" },
    h("h2", { id: "study-title" }, value(study, "00081030") || "Study without description"),
    h("dl", { class: "facts" }, facts.filter(([, v]) => v)
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("div", { class: "actions" },
      h("button", { onclick: () => sendResource("Study", uid, label) },
        "Send to DICOMweb server…"),
      h("button", { class: "secondary", onclick: () => showTags(study) }, "Show tags"),
      h("button", { class: "danger", onclick: async () => {
        if (await deleteResource(`studies/${uid}`, label)) location.hash = "#/studies";
      } }, "Delete study")));
}

/** Every attribute QIDO-RS gives of the study (includefield=all), as a table. */
function showTags(study) {
  const rows = Object.keys(study).sort().map((tag) => {
    const attr = study[tag];
    let text = values(study, tag);
    if (attr.vr === "SQ") text = `(sequence of ${(attr.Value || []).length} item(s))`;
    else if (attr.BulkDataURI || attr.InlineBinary) text = "(binary data)";
    return [formatTag(tag), TAG_NAMES[tag] || `(${attr.vr})`, text];
  });
  dialog("Attributes of the study", tagTable(rows));
}

function seriesPanel(studyUid, series, openUid) {
  const body = series.length
    ? h("table", { class: "series" },
      h("thead", {}, h("tr", {}, ["Preview", "Number", "Modality", "Description", "Instances",
        "Actions"].map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, series.map((s) => seriesRow(studyUid, s, openUid))))
    : h("p", { class: "empty" }, "This study has no series.");
  return h("section", { class: "panel", "aria-labelledby": "series-title" },
    h("h2", { id: "series-title" }, "Series"),
    series.length ? h("p", { class: "muted intro" }, "Open a series to see its instances.") : null,
    body);
}

function seriesRow(studyUid, series, openUid) {
  const uid = value(series, "0020000E");
  const label = seriesLabel(series);
  const href = `#/studies/${studyUid}/series/${uid}`;
  return h("tr", { "data-series": uid, class: uid === openUid ? "selected" : null },
    h("td", {}, h("a", { href, title: "Open the series" },
      image(dicomweb(`studies/${studyUid}/series/${uid}/thumbnail`), `Preview of ${label}`,
            "thumb"))),
    h("td", {}, value(series, "00200011")),
    h("td", {}, value(series, "00080060")),
    h("td", {}, value(series, "0008103E")),
    h("td", {}, value(series, "00201209")),
    h("td", { class: "actions" },
      h("a", { class: "button small secondary", href }, "Open"),
      h("button", { class: "small secondary", onclick: () => sendResource("Series", uid, label) },
        "Send…"),
      h("button", { class: "small danger", onclick: async () => {
        if (await deleteResource(`studies/${studyUid}/series/${uid}`, label)) {
          const target = `#/studies/${studyUid}`;
          if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
          else location.hash = target; // the deleted series was open: close it
        }
      } }, "Delete")));
}

function instancesPanel(studyUid, series) {
  const seriesUid = value(series, "0020000E");
  const panel = h("section", { class: "panel", "aria-labelledby": "instances-title" },
    h("h2", { id: "instances-title" }, `Instances of ${seriesLabel(series)}`),
    h("p", { class: "muted intro" }, "Click an image to see it larger."));
  const thumbs = h("div", { class: "thumbs", "data-testid": "instances" },
    h("p", { class: "muted" }, "Loading…"));
  panel.append(thumbs);
  api(dicomweb(`studies/${studyUid}/series/${seriesUid}/instances`))
    .then((instances) => {
      const sorted = sortBy(instances || [], "00200013");
      thumbs.replaceChildren(...sorted.map((i) => instanceThumb(studyUid, seriesUid, i)));
      if (!sorted.length) thumbs.append(h("p", { class: "empty" }, "No instance."));
    })
    .catch((err) => {
      thumbs.replaceChildren();
      reportError("The instances cannot be listed", err);
    });
  return panel;
}

function instanceThumb(studyUid, seriesUid, instance) {
  const sop = value(instance, "00080018");
  const number = value(instance, "00200013");
  const base = dicomweb(`studies/${studyUid}/series/${seriesUid}/instances/${sop}`);
  const title = `Instance ${number || sop}`;
  const open = () => dialog(title,
    h("div", {}, image(`${base}/rendered`, `${title}, rendered`, "preview"),
      h("p", { class: "muted mono" }, sop)));
  return h("figure", { class: "thumb", tabindex: 0, role: "button", "aria-label": `Show ${title}`,
                       "data-instance": sop, onclick: open,
                       onkeydown: (e) => (e.key === "Enter" || e.key === " ") && open() },
    image(`${base}/thumbnail`, title), h("figcaption", {}, number ? `#${number}` : sop));
}

/** An <img> that says so when the server cannot render it (e.g. a structured report). */
function image(src, alt, cls = "") {
  return h("img", { src, alt, class: cls, onerror: (event) => {
    event.target.replaceWith(h("span", { class: `noimage ${cls}`, role: "img", "aria-label": alt },
                                "No preview"));
  } });
}

/** Sort DICOM JSON objects by an IS attribute (series or instance number), numbers first. */
function sortBy(items, tag) {
  const key = (item) => {
    const n = Number.parseInt(value(item, tag), 10);
    return Number.isNaN(n) ? Number.MAX_SAFE_INTEGER : n;
  };
  return [...items].sort((a, b) => key(a) - key(b));
}
