// Roster console: the only script the pages load (the CSP allows no inline script).
// 1. The register and edit forms keep the server URL and its fields in step, both ways.
// 2. A page marked live reloads when the cluster's revision (or, on the events page, the
//    event log, or on the agents page a deployment acknowledged to this node) moves past the
//    one it shows,
//    waiting on a long poll (/ui/wait) rather than asking again and again.
"use strict";

// The URL built from the scheme, host, port and pool fields, or the fields taken from an
// edited URL: the two stay in step both ways, as in the product.
function urlFromFields(form) {
  const field = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const scheme = field("scheme") || "http";
  const host = field("host");
  if (!host) return "";
  const port = field("port") || "6700";
  const pool = field("pool");
  return `${scheme}://${host}:${port}/` + (pool ? `?pool=${pool}` : "");
}

function fieldsFromUrl(form, url) {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(\[[^\]]+\]|[^:/?]+)(?::(\d+))?\/?(?:\?pool=([^&#]+))?$/.exec(url.trim());
  if (!m) return;
  const set = (name, value) => { if (form.elements[name]) form.elements[name].value = value; };
  set("scheme", m[1]);
  set("host", m[2].replace(/^\[|\]$/g, ""));
  set("port", m[3] || "6700");
  set("pool", m[4] || "");
}

// Set once the page is being left (a form posted, a link followed): a live reload must not
// replace the page the operator asked for.
let leaving = false;
document.addEventListener("submit", () => { leaving = true; });
window.addEventListener("beforeunload", () => { leaving = true; });

function watchRevision() {
  const body = document.body;
  if (body.dataset.live !== "1") return;
  const shown = Number(body.dataset.revision || "0");
  const events = body.dataset.events;
  const acks = body.dataset.acks;
  let failures = 0;
  const poll = () => {
    let query = `after=${shown}`;
    if (events !== undefined) query += `&events_after=${events}`;
    if (acks !== undefined) query += `&acks_after=${acks}`;
    fetch(`/ui/wait?${query}`, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((answer) => {
        failures = 0;
        // Never reload over a form the operator is filling in.
        const typing = document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName);
        if (leaving) return;
        const moved = answer.revision > shown
          || (events !== undefined && answer.events > Number(events))
          || (acks !== undefined && answer.acks > Number(acks));
        if (moved && !typing) {
          window.location.reload();
        } else {
          poll();
        }
      })
      .catch(() => {
        failures += 1;
        setTimeout(poll, Math.min(30000, 1000 * 2 ** failures));
      });
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form").forEach((form) => {
    const url = form.querySelector("#url-field");
    if (!url) return;
    form.addEventListener("input", (e) => {
      if (e.target === url) {
        fieldsFromUrl(form, url.value);
      } else {
        url.value = urlFromFields(form);
      }
    });
  });
  watchRevision();
});
