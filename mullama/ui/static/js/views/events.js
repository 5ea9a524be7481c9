// The Events view: the live event stream (GET /internal/events via api.js recentEvents + subscribe), filterable.
import {recentEvents} from "../api.js";
import {badge, fill, h} from "../dom.js";

const MAX_ROWS = 1000;    // rows kept in the DOM
const MAX_STORE = 3000;   // records kept in memory (filters re-render from these)
const ENVELOPE = new Set(["event", "mono", "time", "model", "id"]);

/** "13:43:24.895" in local time from the record's ISO `time` (the raw text when it does not parse). */
export function eventTime(record) {
  const d = new Date(record.time);
  if (isNaN(d)) return String(record.time ?? "");
  return d.toLocaleTimeString([], {hour12: false}) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

/** The record's own fields (not the envelope, model or id) as compact "key=value" text. */
export function eventFields(record, skip = ENVELOPE) {
  return Object.entries(record)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(" ");
}

/** A colour family for a kind (CSS classes of events.css / scheduler.css), never the kind itself. */
export function kindClass(kind) {
  const k = String(kind);
  if (/fail|crash|unresponsive|expired|stalled|error|evicted/.test(k)) return "ev-bad";
  if (/preempt|swap|deleted|unloaded/.test(k)) return "ev-warn";
  if (/ready|finished|done|resumed/.test(k)) return "ev-ok";
  if (/loading|warming|pull|prefetch/.test(k)) return "ev-load";
  return "ev-info";
}

function textOf(record) {
  try { return JSON.stringify(record).toLowerCase(); } catch { return ""; }
}

function eventRow(record) {
  const kind = String(record.event ?? "");
  const model = record.model == null ? "" : String(record.model);
  const row = h("div", {class: "ev-row", tabindex: "0", role: "button", "aria-expanded": "false",
    dataset: {testid: "event-row", event: kind, model}},
  h("div", {class: "ev-line"},
    h("span", {class: "ev-time mono"}, eventTime(record)),
    h("span", {class: "ev-kind"}, badge(kind, kindClass(kind))),
    h("span", {class: "ev-model"}, model),
    h("span", {class: "ev-id mono"}, record.id == null ? "" : String(record.id)),
    h("span", {class: "ev-fields mono"}, eventFields(record))));
  const toggle = () => {
    const open = row.querySelector("pre");
    if (open) { open.remove(); row.setAttribute("aria-expanded", "false"); return; }
    row.append(h("pre", {class: "ev-json"}, JSON.stringify(record, null, 2)));
    row.setAttribute("aria-expanded", "true");
  };
  row.addEventListener("click", () => {
    if (String(window.getSelection?.() || "")) return;  // selecting text in the JSON must not close it
    toggle();
  });
  row.addEventListener("keydown", e => {
    if (e.target === row && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); toggle(); }
  });
  return row;
}

/** A <select> of "All" + sorted values, keeping the current choice. */
function setOptions(select, values) {
  const keep = select.value;
  fill(select, h("option", {value: ""}, "All"), [...values].sort().map(v => h("option", {value: v}, v)));
  select.value = values.has(keep) ? keep : "";
}

export default {
  id: "events",
  title: "Events",
  mount(root, ctx) {
    const store = [];             // oldest first
    const models = new Set(), kinds = new Set();
    let paused = false, missed = 0;

    const modelSel = h("select", {dataset: {testid: "event-filter-model"}, "aria-label": "model"});
    const kindSel = h("select", {dataset: {testid: "event-filter-kind"}, "aria-label": "event kind"});
    const text = h("input", {type: "search", placeholder: "filter text…", dataset: {testid: "event-filter-text"},
      "aria-label": "filter text"});
    const pauseBtn = h("button", {type: "button", class: "ghost", dataset: {testid: "event-pause"}}, "Pause");
    const info = h("span", {class: "muted ev-info-line", dataset: {testid: "event-count"}});
    const list = h("div", {class: "ev-list", dataset: {testid: "event-list"}});
    const empty = h("p", {class: "empty"});

    const matches = record => {
      if (modelSel.value && String(record.model ?? "") !== modelSel.value) return false;
      if (kindSel.value && String(record.event ?? "") !== kindSel.value) return false;
      const q = text.value.trim().toLowerCase();
      return !q || textOf(record).includes(q);
    };

    const updateInfo = () => {
      const shown = list.childElementCount;
      let s = `${shown} shown · ${store.length} received`;
      if (paused) s += ` · paused: ${missed} new`;
      info.textContent = s;
      empty.hidden = shown > 0;
      empty.textContent = store.length ? "no event matches the filters" : "no events yet: they appear as the server emits them";
    };

    const render = () => {
      const rows = [];
      for (let i = store.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
        if (matches(store[i])) rows.push(eventRow(store[i]));
      }
      fill(list, rows);
      updateInfo();
    };

    const remember = record => {
      if (!record || typeof record !== "object") return false;
      store.push(record);
      if (store.length > MAX_STORE) store.splice(0, store.length - MAX_STORE);
      let changed = false;
      if (record.model != null && !models.has(String(record.model))) { models.add(String(record.model)); changed = true; }
      if (record.event != null && !kinds.has(String(record.event))) { kinds.add(String(record.event)); changed = true; }
      return changed;
    };

    const refreshOptions = () => { setOptions(modelSel, models); setOptions(kindSel, kinds); };

    const onEvent = record => {
      if (remember(record)) refreshOptions();
      if (paused) { missed++; updateInfo(); return; }
      if (matches(record)) {
        list.prepend(eventRow(record));
        while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
      }
      updateInfo();
    };

    pauseBtn.addEventListener("click", () => {
      paused = !paused;
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      pauseBtn.classList.toggle("active", paused);
      pauseBtn.setAttribute("aria-pressed", String(paused));
      if (!paused) { missed = 0; render(); } else updateInfo();
    });
    modelSel.addEventListener("change", render);
    kindSel.addEventListener("change", render);
    let typing = null;
    text.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(render, 150); });

    root.append(h("section", {class: "panel"},
      h("header", {},
        h("h2", {}, "Events"),
        h("label", {}, "model", modelSel),
        h("label", {}, "kind", kindSel),
        text, pauseBtn, h("span", {class: "spacer"}), info),
      empty, list));

    for (const r of recentEvents) remember(r);
    refreshOptions();
    render();
    ctx.subscribe(onEvent);
    return () => clearTimeout(typing);
  },
};
