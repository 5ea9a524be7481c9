// Timeline: a Gantt chart of each model's lifecycle states over time, with crashes, swaps and prefetches
// marked, and tables of loads, swaps and prefetches. Reads GET /internal/models (+ live model_* events).
import {api} from "../api.js";
import {badge, fill, fmtBytes, fmtMs, fmtTime, h, table} from "../dom.js";

const WINDOWS = [["300", "last 5 min"], ["1800", "last 30 min"], ["0", "all"]];
const LEGEND = [["discovered", "discovered"], ["loading", "loading"], ["warming", "warming"], ["ready", "ready"],
  ["draining", "draining"], ["unloading", "unloading"], ["unloaded", "unloaded"], ["evicted", "unloaded (evicted)"],
  ["failed", "failed"], ["crashed", "crashed"]];
// live events -> the transition the server is about to record (shown until the next poll brings the real one)
const EVENT_STATES = {model_loading: "loading", model_warming: "warming", model_ready: "ready",
  model_failed: "failed", model_unloaded: "unloaded", runner_crashed: "failed"};
const REFRESH_EVENTS = new Set([...Object.keys(EVENT_STATES), "model_evicted", "swap", "prefetch", "swap_started"]);
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
const SKIP = new Set(["state", "at", "mono"]);

let windowS = 300;  // kept while the dashboard is open

/** The colour class of a transition: evictions and crashes get their own colours. */
function look(entry) {
  if (entry.crash) return "crashed";
  if (["draining", "unloading", "unloaded"].includes(entry.state) && String(entry.reason || "").startsWith("evicted")) {
    return "evicted";
  }
  return entry.state;
}

function detailText(entry) {
  return Object.entries(entry).filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
}

function niceStep(span) {
  return STEPS.find(s => span / s <= 8) || Math.ceil(span / 8 / 86400) * 86400;
}

export default {
  id: "timeline",
  title: "Timeline",
  mount(root, ctx) {
    let data = null, pollFailed = false;
    const rows = new Map();  // model -> {row, track, items: Map(key -> el)}
    const axis = h("div", {class: "tl-axis"});
    const rowsEl = h("div", {class: "tl-rows"});
    const empty = h("p", {class: "empty", hidden: true},
      "no model has a history yet: the first request (or POST /api/load) loads one");
    const gantt = h("div", {class: "tl-gantt", "data-testid": "timeline"},
      h("div", {class: "tl-row tl-head"}, h("div", {class: "tl-label muted"}, "model"), axis), rowsEl);
    const loadsEl = h("div"), prefetchEl = h("div");
    const sigs = {};

    const select = h("select", {"data-testid": "timeline-window", onchange: () => { windowS = Number(select.value); draw(); }},
      WINDOWS.map(([v, label]) => h("option", {value: v, selected: Number(v) === windowS}, label)));
    root.append(
      h("section", {class: "panel"},
        h("header", {}, h("h2", {}, "Lifecycle timeline"), h("label", {}, "window", select),
          h("span", {class: "spacer"}),
          h("div", {class: "tl-legend"}, LEGEND.map(([s, label]) =>
            h("span", {class: "tl-key"}, h("span", {class: "tl-swatch", dataset: {look: s}}), label)))),
        gantt, empty,
        h("p", {class: "muted small"}, "Hover a segment for its state, start, duration and details; ▼ marks a crash, ",
          "◆ a variant swap, ● a prefetch. The server keeps each model's last 64 transitions.")),
      h("section", {class: "panel"}, h("h2", {}, "Loads and swaps"), loadsEl),
      h("section", {class: "panel"}, h("h2", {}, "Prefetch"), prefetchEl));

    // ---------------------------------------------------------------- data
    let soon = null;
    async function refresh() {
      try {
        data = await api("/internal/models");
        if (pollFailed) { pollFailed = false; ctx.notify(null); }
      } catch (e) {
        pollFailed = true;
        ctx.notify("timeline: " + (e.message || e));
        return;
      }
      draw();
      tables();
    }
    ctx.every(2000, refresh);
    ctx.every(1000, () => { if (data) draw(); });
    ctx.subscribe(record => {
      if (!REFRESH_EVENTS.has(record.event)) return;
      if (appendLive(record)) draw();
      clearTimeout(soon);
      soon = setTimeout(refresh, 300);
    });

    /** Add a live event's transition to the model's history (until the next poll brings the server's). */
    function appendLive(rec) {
      const state = EVENT_STATES[rec.event];
      const at = Date.parse(rec.time) / 1000;
      if (!data || !state || !rec.model || !isFinite(at)) return false;
      let m = (data.models || []).find(x => x.name === rec.model);
      if (!m) {
        if (Date.now() / 1000 - at > 10) return false;  // an old replayed event of a model the server forgot
        m = {name: rec.model, history: [], loads: []};
        (data.models = data.models || []).push(m);
      }
      const hist = m.history || (m.history = []);
      const last = hist[hist.length - 1];
      if (last && at <= last.at + 0.001) return false;
      const detail = {};
      for (const k of ["reason", "load_ms", "error", "code", "in_flight"]) if (rec[k] !== undefined) detail[k] = rec[k];
      if (rec.event === "runner_crashed") detail.crash = true;
      hist.push({state, at, live: true, ...detail});
      return true;
    }

    // ---------------------------------------------------------------- the chart
    function draw() {
      const now = Date.now() / 1000;
      const models = [...((data && data.models) || [])].sort((a, b) => a.name.localeCompare(b.name));
      empty.hidden = models.some(m => (m.history || []).length > 0);
      gantt.hidden = !empty.hidden;
      let t0 = now - windowS;
      if (!windowS) {
        const firsts = models.map(m => (m.history || [])[0]).filter(Boolean).map(e => e.at);
        t0 = Math.min(now - 60, ...firsts);
      }
      const span = Math.max(1, now - t0);
      const pos = t => ((Math.max(t0, Math.min(now, t)) - t0) / span) * 100;
      drawAxis(t0, now, span, pos);
      const seen = new Set();
      for (const m of models) {
        seen.add(m.name);
        drawRow(m, now, t0, pos);
      }
      for (const [name, r] of rows) if (!seen.has(name)) { r.row.remove(); rows.delete(name); }
      const order = models.map(m => rows.get(m.name).row);
      if (order.some((el, i) => rowsEl.children[i] !== el) || rowsEl.children.length !== order.length) {
        rowsEl.replaceChildren(...order);
      }
    }

    function drawAxis(t0, now, span, pos) {
      const step = niceStep(span);
      const ticks = [];
      for (let t = Math.ceil(t0 / step) * step; t < now - step * 0.3; t += step) {
        ticks.push(h("span", {class: "tl-tick", style: {left: pos(t).toFixed(3) + "%"}}, fmtTime(t)));
      }
      fill(axis, ticks, h("span", {class: "tl-tick tl-now"}, "now"));
    }

    function drawRow(m, now, t0, pos) {
      let r = rows.get(m.name);
      if (!r) {
        const track = h("div", {class: "tl-track"});
        r = {track, items: new Map(),
          row: h("div", {class: "tl-row", dataset: {model: m.name}},
            h("div", {class: "tl-label", title: m.name}, m.name), track)};
        rows.set(m.name, r);
      }
      const want = new Map();  // key -> [make, update]
      const hist = m.history || [];
      hist.forEach((e, i) => {
        const end = i + 1 < hist.length ? hist[i + 1].at : now;
        if (end < t0) return;
        const span = [e.at, end, i + 1 >= hist.length];
        want.set(`s|${e.at}|${e.state}`, [() => segment(m.name, e), el => { el._span = span; el._entry = e; }]);
      });
      for (const mk of markers(m)) if (mk.at >= t0) want.set(`m|${mk.kind}|${mk.at}`, [() => marker(m.name, mk), () => {}]);
      for (const [key, el] of r.items) if (!want.has(key)) { el.remove(); r.items.delete(key); }
      for (const [key, [make, set]] of want) {
        let el = r.items.get(key);
        if (!el) { el = make(); r.items.set(key, el); r.track.append(el); }
        set(el);
        place(el, pos, now);
      }
    }

    function segment(model, e) {
      return h("div", {class: "seg", "data-testid": "segment", "data-model": model, "data-state": e.state,
        dataset: {look: look(e)}});
    }

    function place(el, pos, now) {
      if (!el._span) { el.style.left = pos(el._at).toFixed(3) + "%"; return; }
      const [start, end0, open] = el._span;
      const end = open ? now : end0;
      el.style.left = pos(start).toFixed(3) + "%";
      el.style.width = Math.max(0, pos(end) - pos(start)).toFixed(3) + "%";
      const e = el._entry;
      const title = [`${e.state}${e.crash ? " (crash)" : ""}`, `from ${fmtTime(start)}` + (open ? " (now)" : ` to ${fmtTime(end)}`),
        `duration ${fmtMs((end - start) * 1000)}`, ...detailText(e)].join("\n");
      if (el.title !== title) el.title = title;
    }

    function markers(m) {
      const out = [];
      for (const l of m.loads || []) {
        if (l.crash) out.push({kind: "crash", at: l.at, text: `crash: exit code ${l.code}, ${l.in_flight ?? 0} requests lost`});
      }
      for (const s of (data && data.swaps) || []) {
        if (s.model === m.name) out.push({kind: "swap", at: s.at, text: `swap: ${s.previous} → ${s.model} (${s.mode}, ${fmtMs(s.swap_ms)})`});
      }
      for (const p of ((data && data.prefetch) || {}).history || []) {
        if (p.model === m.name) {
          out.push({kind: "prefetch", at: p.at, text: `prefetch after ${p.from} (confidence ${p.confidence})` +
            (p.ok ? "" : `: ${p.error || "skipped"}`)});
        }
      }
      return out;
    }

    function marker(model, mk) {
      const el = h("div", {class: "tl-marker", "data-testid": "marker", "data-model": model, dataset: {kind: mk.kind},
        title: `${fmtTime(mk.at)} ${mk.text}`}, {crash: "▼", swap: "◆", prefetch: "●"}[mk.kind]);
      el._at = mk.at;
      return el;
    }

    // ---------------------------------------------------------------- tables
    function tables() {
      const models = (data && data.models) || [];
      const loads = models.flatMap(m => (m.loads || []).map(l => ({...l, model: m.name})));
      const swaps = (data && data.swaps) || [];
      update("loads", loadsEl, [loads, swaps], () => loadsTable(loads, swaps));
      update("prefetch", prefetchEl, (data && data.prefetch) || null, () => prefetchTables(data && data.prefetch));
    }

    function update(key, el, value, build) {
      const sig = JSON.stringify(value);
      if (sigs[key] !== sig) { sigs[key] = sig; fill(el, build()); }
    }

    function loadsTable(loads, swaps) {
      const rowsOut = [
        ...loads.map(l => ({at: l.at, model: l.model, kind: l.crash ? "crash" : l.skipped ? "skipped" : l.ok ? "load" : "failed",
          reason: l.reason || "", ms: l.load_ms, ok: !!l.ok, detail: loadDetail(l),
          tail: (l.stderr_tail || []).join("\n")})),
        ...swaps.map(s => ({at: s.at, model: `${s.previous} → ${s.model}`, kind: "swap", reason: s.mode, ms: s.swap_ms, ok: true,
          detail: `${s.family}: variant ${s.variant}`})),
      ].sort((a, b) => b.at - a.at).slice(0, 200);
      return table([
        {label: "at", value: r => fmtTime(r.at)},
        {label: "model", value: r => r.model},
        {label: "what", value: r => badge(r.kind, {load: "ready", swap: "draining", crash: "crashed", failed: "failed"}[r.kind] || "")},
        {label: "reason", value: r => r.reason},
        {label: "duration", class: "num", value: r => fmtMs(r.ms)},
        {label: "result", value: r => (r.ok ? r.detail : h("span", {class: "error", title: r.tail || undefined}, r.detail))},
      ], rowsOut, {empty: "no load yet", rowAttrs: r => ({"data-testid": "load-row", dataset: {kind: r.kind}})});
    }

    function loadDetail(l) {
      if (l.crash) return `exit code ${l.code}, ${l.in_flight ?? 0} requests lost` + (l.stderr_tail?.length ? " (hover: runner's last log lines)" : "");
      if (l.ok) return [l.processor, l.memory ? fmtBytes(l.memory) : ""].filter(Boolean).join(" · ");
      return l.error || "failed";
    }

    function prefetchTables(pf) {
      if (!pf) return h("p", {class: "empty"}, "no prefetch information from /internal/models");
      const pr = pf.predictor;
      if (!pr) return h("p", {class: "empty"}, "prefetch is off (prefetch = \"none\")");
      const transitions = pr.transitions || {};
      const preds = Object.entries(pr.predictions || {});
      return [
        h("p", {class: "muted"}, `predictor ${pr.name}: ${pr.requests ?? 0} requests, current run ${pf.last || "–"}; ` +
          `prefetch after ${pf.idle_s} s idle, may evict at confidence ≥ ${pf.min_confidence}`),
        table([
          {label: "after", value: ([from]) => from},
          {label: "switches seen", value: ([from]) => Object.entries(transitions[from] || {}).map(([to, w]) => `${to} ×${w}`).join(", ") || "–"},
          {label: "prediction", value: ([, p]) => (p ? p.model : h("span", {class: "muted"}, "none yet"))},
          {label: "confidence", class: "num", value: ([, p]) => (p ? p.confidence.toFixed(3) : "–")},
        ], preds, {empty: "no predictions yet: the predictor learns from switches between models"}),
        h("h3", {}, "Prefetch history"),
        table([
          {label: "at", value: r => fmtTime(r.at)},
          {label: "model", value: r => r.model},
          {label: "after", value: r => r.from},
          {label: "confidence", class: "num", value: r => String(r.confidence)},
          {label: "may evict", value: r => (r.evict ? "yes" : "no")},
          {label: "result", value: r => (r.ok ? badge("loaded", "ready") : h("span", {class: "error"}, r.error || "skipped"))},
        ], [...(pf.history || [])].reverse(), {empty: "no prefetch yet"}),
      ];
    }

    return () => clearTimeout(soon);
  },
};
