// Building the page without HTML strings: every text goes in as a text node, so model output and model
// names can never become markup. Nothing in the dashboard turns a string into HTML.

/** h("div", {class: "x", onclick: fn, dataset: {id: 1}}, "text", child, [more]) -> HTMLElement */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns [{label, value: row => text|Node, class?}], rows; an empty-state line when none. */
export function table(columns, rows, {empty = "nothing yet", rowAttrs = () => ({})} = {}) {
  if (!rows.length) return h("p", {class: "empty"}, empty);
  return h("table", {class: "grid"},
    h("thead", {}, h("tr", {}, columns.map(c => h("th", {class: c.class}, c.label)))),
    h("tbody", {}, rows.map(r => h("tr", rowAttrs(r), columns.map(c => h("td", {class: c.class}, c.value(r)))))));
}

/** A labelled bar: value / total, with an optional second mark (e.g. a memory budget). */
export function bar(value, total, {label = "", mark = null, kind = ""} = {}) {
  const pct = total > 0 ? Math.min(100, (100 * value) / total) : 0;
  return h("div", {class: "bar " + kind, title: label},
    h("div", {class: "fill", style: {width: pct.toFixed(1) + "%"}}),
    mark !== null && total > 0 ? h("div", {class: "mark", style: {left: Math.min(100, (100 * mark) / total).toFixed(1) + "%"}}) : null,
    h("span", {class: "bar-label"}, label));
}

export function badge(text, kind = "") {
  return h("span", {class: "badge " + (kind || String(text).toLowerCase())}, text);
}

// ------------------------------------------------------------------ formatting

export function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(v < 10 ? 2 : 1) : String(v)) + " " + units[i];
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "–";
  if (Math.abs(ms) < 1) return ms.toFixed(2) + " ms";
  if (Math.abs(ms) < 1000) return ms.toFixed(0) + " ms";
  if (Math.abs(ms) < 60_000) return (ms / 1000).toFixed(1) + " s";
  return fmtDuration(ms / 1000);
}

export function fmtDuration(s) {
  if (s === null || s === undefined || isNaN(s)) return "–";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${r}s`;
  return `${r}s`;
}

export function fmtTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], {hour12: false});
}
