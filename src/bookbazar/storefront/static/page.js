// Pages with no behaviour of their own: just the header.
import { initPage } from "./common.js";

await initPage({ live: false });
document.body.dataset.ready = "true";
