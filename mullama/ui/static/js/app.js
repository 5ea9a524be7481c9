// The shell: navigation between views (location hash), each view's polls and event subscriptions tied to
// its lifetime, the API-key dialog and the live-stream indicator. Views live in views/*.js; each exports
// {id, title, mount(root, ctx)} and may return a cleanup function from mount.

import {apiKey, onStreamStatus, onUnauthorized, setApiKey, subscribe} from "./api.js";
import {fill, h} from "./dom.js";
import charts from "./views/charts.js";
import events from "./views/events.js";
import kv from "./views/kv.js";
import models from "./views/models.js";
import playground from "./views/playground.js";
import scheduler from "./views/scheduler.js";
import timeline from "./views/timeline.js";

const VIEWS = [models, timeline, scheduler, kv, charts, events, playground];
const byId = new Map(VIEWS.map(v => [v.id, v]));

const $ = id => document.getElementById(id);
let current = null;  // {view, cleanups}

function banner(message, kind = "error") {
  const el = $("banner");
  if (!message) { el.hidden = true; return; }
  fill(el, message, h("button", {type: "button", class: "ghost", onclick: () => { el.hidden = true; }}, "×"));
  el.className = "banner " + kind;
  el.hidden = false;
}

function context(cleanups) {
  return {
    /** Run fn now and every ms while the view is shown; a failing poll shows in the banner. */
    every(ms, fn) {
      let stopped = false, timer = null;
      const tick = async () => {
        try { await fn(); } catch (e) { if (!stopped) banner(String(e.message || e)); }
        if (!stopped) timer = setTimeout(tick, ms);
      };
      tick();
      cleanups.push(() => { stopped = true; clearTimeout(timer); });
    },
    /** fn(record) for each live event while the view is shown. */
    subscribe(fn) { cleanups.push(subscribe(fn)); },
    notify: banner,
    go: (id, params = "") => { location.hash = id + (params ? "?" + params : ""); },
    /** The view's query parameters from the hash (#playground?model=x). */
    params: () => new URLSearchParams(location.hash.split("?")[1] || ""),
  };
}

function show() {
  const id = (location.hash.slice(1).split("?")[0]) || "models";
  const view = byId.get(id) || models;
  if (current && current.view === view) return;
  if (current) current.cleanups.forEach(fn => { try { fn(); } catch (e) { console.warn(e); } });
  banner(null);
  const root = fill($("view"));
  root.dataset.view = view.id;
  const cleanups = [];
  current = {view, cleanups};
  for (const a of $("nav").children) a.classList.toggle("active", a.dataset.view === view.id);
  document.title = `${view.title} · mullama`;
  try {
    const cleanup = view.mount(root, context(cleanups));
    if (typeof cleanup === "function") cleanups.push(cleanup);
  } catch (e) {
    console.error(e);
    banner(`the ${view.title} view failed: ${e.message || e}`);
  }
}

function keyDialog() {
  const dialog = $("key-dialog");
  if (!dialog.open) {
    $("key-input").value = apiKey();
    dialog.showModal();
  }
}

function init() {
  fill($("nav"), VIEWS.map(v => h("a", {href: "#" + v.id, dataset: {view: v.id}}, v.title)));
  $("key-form").addEventListener("submit", () => {
    setApiKey($("key-input").value.trim());
    location.reload();
  });
  $("key-forget").addEventListener("click", () => { setApiKey(""); $("key-dialog").close(); location.reload(); });
  $("key-button").addEventListener("click", keyDialog);
  $("key-button").hidden = !apiKey();
  onUnauthorized(() => { $("key-button").hidden = false; keyDialog(); });
  const live = $("live");
  onStreamStatus(state => {
    live.textContent = state === "live" ? "live" : state === "unauthorized" ? "needs key" : "reconnecting…";
    live.className = "live " + state;
  });
  subscribe(() => {});  // start the stream once, whatever the first view
  window.addEventListener("hashchange", show);
  show();
}

init();
