// The local study browser (issue 6): hash-routed views, so that the browser's Back button
// and bookmarks work and the server only ever serves one page.
//   #/studies                      search the local studies (default)
//   #/studies/{study}              one study: its series, tags, send, delete
//   #/studies/{study}/series/{se}  ... and the instances of one series
//   #/upload                       store DICOM files from this computer (STOW-RS)
//   #/jobs                         the jobs (sends, retrieves) with their controls
import { renderJobs } from "./jobs.js";
import { renderStudies } from "./studies.js";
import { renderStudy } from "./study.js";
import { renderUpload } from "./upload.js";

const UID = "([0-9.]+)";
const ROUTES = [
  [new RegExp(`^#/studies/${UID}/series/${UID}$`), "studies", renderStudy],
  [new RegExp(`^#/studies/${UID}$`), "studies", renderStudy],
  [/^#\/upload$/, "upload", renderUpload],
  [/^#\/jobs$/, "jobs", renderJobs],
  [/^/, "studies", renderStudies],
];

let leave = null; // what the current view must stop (the jobs view's refresh timer)

function route() {
  if (leave) leave();
  leave = null;
  const view = document.getElementById("view");
  view.replaceChildren();
  for (const [pattern, name, render] of ROUTES) {
    const match = location.hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("header nav a[data-view]")) {
      const active = link.dataset.view === name;
      link.classList.toggle("active", active);
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    leave = render(view, match) || null;
    return;
  }
}

window.addEventListener("hashchange", route);
route();
