// The studies view: a QIDO-RS search of the local studies (PS3.18 §10.6) with paging.
import { api, dicomDate, formatDate, formatName, h, value, values } from "../common/common.js";
import { deleteResource, sendResource, studyLabel } from "./actions.js";
import { dicomweb, reportError } from "./context.js";

const PAGE_SIZE = 25;
const MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "RF", "OT", "SR", "SEG"];

// Kept while the page is open: coming back from a study shows the same search and page.
const search = { fields: {}, offset: 0 };

export function renderStudies(view) {
  const results = h("div", { "data-testid": "study-results", "aria-live": "polite" });
  const form = searchForm(() => {
    search.offset = 0;
    load(results);
  });
  view.append(
    h("section", { class: "panel", "aria-labelledby": "studies-title" },
      h("h2", { id: "studies-title" }, "Local studies"),
      h("p", { class: "muted intro" },
        "The studies stored on this server. Fill any field and press Search; leave them all ",
        "empty to list every study. A patient name matches from the start of each word ",
        "(\"doe j\" finds DOE^JOHN); * and ? are wildcards."),
      form),
    h("section", { class: "panel" }, results));
  load(results);
}

function searchForm(onSearch) {
  const input = (label, name, props = {}) =>
    h("label", {}, label, h("input", { name, value: search.fields[name] || "", ...props }));
  const modality = h("select", { name: "modality" },
    h("option", { value: "" }, "Any"),
    MODALITIES.map((m) => h("option", { value: m, selected: search.fields.modality === m }, m)));
  const form = h("form", { class: "lookup", role: "search", "aria-label": "Search local studies" },
    input("Patient name", "name", { type: "search", placeholder: "e.g. DOE^J or doe*" }),
    input("Patient ID", "id", { type: "search" }),
    input("Accession number", "accession", { type: "search" }),
    input("Study date from", "from", { type: "date" }),
    input("Study date to", "to", { type: "date" }),
    h("label", {}, "Modality", modality),
    h("button", { type: "submit" }, "Search"),
    h("button", { type: "reset", class: "secondary" }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search.fields = Object.fromEntries(new FormData(form).entries());
    onSearch();
  });
  // Clear empties the fields (reset alone would restore the values the form was built with).
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    for (const field of form.elements) if (field.name) field.value = "";
    search.fields = {};
    onSearch();
  });
  return form;
}

/** The QIDO-RS query of the form; limit is one more than a page to know if a next one exists. */
function queryOf(fields, offset) {
  const query = new URLSearchParams();
  const name = (fields.name || "").trim();
  if (name) {
    query.set("PatientName", name);
    // Without wildcards, fuzzy matching (PS3.18 §8.3.4.2): each word is a prefix of a name
    // word, ignoring case, which is what people expect of a search box.
    if (!/[*?]/.test(name)) query.set("fuzzymatching", "true");
  }
  if ((fields.id || "").trim()) query.set("PatientID", fields.id.trim());
  if ((fields.accession || "").trim()) query.set("AccessionNumber", fields.accession.trim());
  const from = dicomDate(fields.from);
  const to = dicomDate(fields.to);
  if (from || to) query.set("StudyDate", from && from === to ? from : `${from}-${to}`);
  if (fields.modality) query.set("ModalitiesInStudy", fields.modality);
  query.set("limit", String(PAGE_SIZE + 1));
  query.set("offset", String(offset));
  return query;
}

async function load(results) {
  results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
  let studies;
  try {
    studies = (await api(dicomweb(`studies?${queryOf(search.fields, search.offset)}`))) || [];
  } catch (err) {
    results.replaceChildren(h("p", { class: "empty" }, "The search failed (see the message above)."));
    reportError("The search failed", err);
    return;
  }
  const refresh = () => load(results);
  const more = studies.length > PAGE_SIZE;
  const shown = studies.slice(0, PAGE_SIZE);
  if (shown.length === 0 && search.offset === 0) {
    results.replaceChildren(h("p", { class: "empty" }, "No study matches."));
    return;
  }
  results.replaceChildren(studyTable(shown, refresh), pager(shown.length, more, refresh));
}

function studyTable(studies, refresh) {
  return h("table", { class: "studies" },
    h("thead", {}, h("tr", {},
      ["Patient name", "Patient ID", "Study date", "Description", "Accession", "Modalities",
        "Series / instances", "Actions"].map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, studies.map((study) => studyRow(study, refresh))));
}

function studyRow(study, refresh) {
  const uid = value(study, "0020000D");
  const label = studyLabel(study);
  return h("tr", { "data-study": uid },
    h("td", {}, h("a", { href: `#/studies/${uid}`, title: "Open the study" },
      formatName(value(study, "00100010")) || "(no name)")),
    h("td", {}, value(study, "00100020")),
    h("td", {}, formatDate(value(study, "00080020"))),
    h("td", {}, value(study, "00081030")),
    h("td", {}, value(study, "00080050")),
    h("td", {}, values(study, "00080061").split("\\").join(", ")),
    h("td", {}, `${value(study, "00201206")} / ${value(study, "00201208")}`),
    h("td", { class: "actions" },
      h("a", { class: "button small secondary", href: `#/studies/${uid}` }, "Open"),
      h("button", { class: "small secondary", onclick: () => sendResource("Study", uid, label) },
        "Send…"),
      h("button", { class: "small danger", onclick: async () => {
        if (await deleteResource(`studies/${uid}`, label)) refresh();
      } }, "Delete")));
}

function pager(count, more, refresh) {
  const first = search.offset + 1;
  const move = (delta) => {
    search.offset = Math.max(0, search.offset + delta);
    refresh();
  };
  return h("div", { class: "pager", "aria-label": "Pages" },
    h("button", { class: "secondary", disabled: search.offset === 0,
                  onclick: () => move(-PAGE_SIZE) }, "Previous"),
    h("span", { "data-testid": "showing" },
      count ? `Showing ${first}–${search.offset + count}` : "No more studies"),
    h("button", { class: "secondary", disabled: !more, onclick: () => move(PAGE_SIZE) }, "Next"));
}
