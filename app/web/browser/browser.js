import { h } from "../common/common.js";

document.getElementById("app").append(h("p", {}, "Local studies"));
