// Shared by the local study browser and the DICOMweb client app: requests with clear
// errors, a tiny DOM builder, DICOM JSON values (PS3.18 F.2), job polling, messages,
// progress bars and dialogs. Plain ES module, no dependency, nothing to build.

/** An HTTP answer that is not 2xx, with the server's JSON ``Message`` when it sent one. */
export class ApiError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details || "";
  }
}

/**
 * fetch() with the page's credentials; JSON in and out by default.
 * options: method, json (a value sent as JSON), body, headers, as ("json" | "blob" | "text").
 */
export async function api(url, options = {}) {
  const init = { method: options.method || "GET", headers: { ...(options.headers || {}) },
                 credentials: "same-origin" };
  if (options.json !== undefined) {
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  } else if (options.body !== undefined) {
    init.body = options.body;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, `The server cannot be reached (${err.message})`);
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  const as = options.as || "json";
  if (as === "blob") return response.blob();
  if (as === "text") return response.text();
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let details = "";
  try {
    const body = await response.json();
    if (body && body.Message) message = body.Message;
    if (body && body.Details) details = body.Details;
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, details);
}

/** h("button", {class: "x", onclick: f}, "text", child...) */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, val] of Object.entries(props || {})) {
    if (val === undefined || val === null || val === false) continue;
    if (key.startsWith("on") && typeof val === "function") {
      node.addEventListener(key.slice(2), val);
    } else if (key === "dataset") {
      Object.assign(node.dataset, val);
    } else if (val === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(val));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** First value of a DICOM JSON attribute as text ("" when absent); PN → its Alphabetic group. */
export function value(attrs, tag) {
  const attr = attrs && attrs[tag];
  if (!attr || !Array.isArray(attr.Value) || attr.Value.length === 0) return "";
  const first = attr.Value[0];
  if (first && typeof first === "object") return first.Alphabetic || "";
  return String(first);
}

/** Every value of a DICOM JSON attribute joined by "\\" (multi-valued CS, UI...). */
export function values(attrs, tag) {
  const attr = attrs && attrs[tag];
  if (!attr || !Array.isArray(attr.Value)) return "";
  return attr.Value.map((v) => (v && typeof v === "object" ? v.Alphabetic || "" : v)).join("\\");
}

/** DA "20240131" → "2024-01-31" (anything else unchanged). */
export function formatDate(da) {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da;
}

/** PN "DOE^JOHN" → "DOE, JOHN". */
export function formatName(pn) {
  return pn ? pn.split("^").filter(Boolean).join(", ") : "";
}

/** "2024-01-31" (an <input type=date>) → "20240131". */
export function dicomDate(iso) {
  return iso ? iso.replaceAll("-", "") : "";
}

/**
 * Poll a job (Orthanc's /jobs/{id}) until Success or Failure; onUpdate(job) after each read.
 * Resolves with the last job object.
 */
export async function pollJob(jobUrl, onUpdate, interval = 300) {
  for (;;) {
    const job = await api(jobUrl);
    if (onUpdate) onUpdate(job);
    if (job.State === "Success" || job.State === "Failure") return job;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** A progress bar: .set(percent, label). */
export function progressBar(label = "") {
  const fill = h("div", { class: "progress-fill", role: "progressbar", "aria-valuemin": 0,
                          "aria-valuemax": 100, "aria-valuenow": 0 });
  const text = h("span", { class: "progress-text" }, label);
  const bar = h("div", { class: "progress" }, fill, text);
  bar.set = (percent, caption) => {
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    fill.style.width = `${p}%`;
    fill.setAttribute("aria-valuenow", p);
    text.textContent = caption === undefined ? `${p} %` : caption;
  };
  return bar;
}

/** Show a message in a container: kind is "error", "success", "warning" or "info". */
export function showMessage(container, kind, text, details = "") {
  const node = h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
                 h("span", {}, text),
                 details ? h("small", { class: "details" }, details) : null,
                 h("button", { class: "close", title: "Dismiss", "aria-label": "Dismiss",
                               onclick: () => node.remove() }, "×"));
  container.prepend(node);
  return node;
}

/** The message of an error for users: the server's Message, else the error's text. */
export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return err.message;
    return `${err.message} (HTTP ${err.status})`;
  }
  return String(err && err.message ? err.message : err);
}

/** A modal dialog with a title and content; resolves when closed. */
export function dialog(title, content, buttons = []) {
  return new Promise((resolve) => {
    const close = (result) => { overlay.remove(); resolve(result); };
    const overlay = h("div", { class: "overlay", onclick: (e) => e.target === overlay && close(null) },
      h("div", { class: "dialog", role: "dialog", "aria-modal": "true", "aria-label": title },
        h("header", {}, h("h2", {}, title),
          h("button", { class: "close", "aria-label": "Close", onclick: () => close(null) }, "×")),
        h("div", { class: "dialog-body" }, content),
        h("footer", {}, ...buttons.map(([label, result, cls]) =>
          h("button", { class: cls || "", onclick: () => close(result) }, label)))));
    document.body.append(overlay);
  });
}

/** Ask for confirmation; resolves true or false. */
export async function confirmDialog(title, text, action = "Delete") {
  const answer = await dialog(title, h("p", {}, text),
                              [["Cancel", false], [action, true, "danger"]]);
  return answer === true;
}

/** A table of DICOM attributes (tag, keyword, value) from DICOM JSON or Orthanc's simplified form. */
export function tagTable(rows) {
  return h("table", { class: "tags" },
    h("thead", {}, h("tr", {}, h("th", {}, "Tag"), h("th", {}, "Name"), h("th", {}, "Value"))),
    h("tbody", {}, rows.map(([tag, name, val]) =>
      h("tr", {}, h("td", { class: "mono" }, tag), h("td", {}, name), h("td", {}, val)))));
}

/** "0010,0010"-style tag from "00100010". */
export function formatTag(hex) {
  return `${hex.slice(0, 4)},${hex.slice(4)}`;
}
