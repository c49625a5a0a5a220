// What every view of the local study browser shares: where the DICOMweb root is and where
// messages go.
import { describe, showMessage } from "../common/common.js";

const MAX_MESSAGES = 5; // older ones are dropped so that the page does not fill up

/** The DICOMweb root relative to this page ("dicom-web/" by default), written by the
 * server into <meta name="dicomweb-root"> (app/web.py): the page cannot guess it. */
export const ROOT = (() => {
  const meta = document.querySelector('meta[name="dicomweb-root"]');
  const root = meta ? meta.content : "";
  return root && !root.includes("{{") ? root : "dicom-web/";
})();

/** A URL under the DICOMweb root, relative to the page (works behind a reverse proxy path). */
export function dicomweb(path) {
  return ROOT + path;
}

/** Show a message at the top of the page ("error", "success", "warning" or "info"). */
export function notify(kind, text, details = "") {
  const box = document.getElementById("messages");
  while (box.children.length >= MAX_MESSAGES) box.lastElementChild.remove();
  return showMessage(box, kind, text, details);
}

/** An error for users: what failed, then the server's own message. */
export function reportError(what, err) {
  return notify("error", `${what}: ${describe(err)}`, (err && err.details) || "");
}
