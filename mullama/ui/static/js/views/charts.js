// The Charts view: throughput, TTFT, inter-token latency, queue depth and memory over time (uPlot), from GET /internal/stats.
import {ApiError, api} from "../api.js";
import {fill, fmtBytes, fmtMs, h} from "../dom.js";
import uPlot from "../../vendor/uplot/uPlot.esm.js";

const HEIGHT = 200;
const KEEP_S = 3600;  // points older than this are dropped
const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--s-draining", "--idle", "--s-loading", "--s-ready"];
const SPANS = [[300, "last 5 min"], [900, "last 15 min"], [3600, "last hour"]];

const num = v => (typeof v === "number" && isFinite(v) ? v : null);
const fmtRate = v => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const fmtInt = v => String(Math.round(v));
const fmtTick = v => (Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 1 ? 2 : 1));

/** The charts: each series reads a sample key (memory's series are the models, added as they appear). */
const CHARTS = [
  {metric: "throughput", title: "Throughput", unit: "tokens/s", fmt: v => fmtRate(v) + " tok/s", axis: fmtTick,
    series: [{key: "tokens_per_s", label: "generated"}, {key: "prompt_tokens_per_s", label: "prompt"}]},
  {metric: "ttft", title: "Time to first token", unit: "ms", fmt: fmtMs, axis: fmtTick, windowed: true,
    series: [{key: "ttft_ms_p50", label: "p50"}, {key: "ttft_ms_p95", label: "p95"}]},
  {metric: "itl", title: "Inter-token latency", unit: "ms", fmt: fmtMs, axis: fmtTick, windowed: true,
    series: [{key: "itl_ms_p50", label: "p50"}, {key: "itl_ms_p95", label: "p95"}]},
  {metric: "queue", title: "Queue depth", unit: "requests", fmt: fmtInt, axis: fmtInt, stepped: true,
    incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
    series: [{key: "running", label: "running"}, {key: "waiting", label: "waiting"}]},
  {metric: "memory", title: "Memory", unit: "bytes per loaded model", fmt: fmtBytes, axis: fmtBytes, axisSize: 76,
    incrs: [0, 1, 2, 3, 4].flatMap(k => [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map(m => m * 1024 ** k)), series: null},
];
const SCALAR_KEYS = CHARTS.flatMap(c => (c.series || []).map(s => s.key)).concat(["requests_per_s"]);

// ------------------------------------------------------------------ the sample store

function newStore() {
  const cols = new Map(SCALAR_KEYS.map(k => [k, []]));
  return {t: [], cols, models: [], mem: new Map(), interval: 1, window: 30, last: null};
}

/** Append the samples newer than the last one; a model seen for the first time gets nulls before. */
function append(store, samples) {
  for (const s of samples) {
    const t = num(s && s.t);
    if (t === null || (store.t.length && t <= store.t[store.t.length - 1])) continue;
    store.t.push(t);
    for (const [k, col] of store.cols) col.push(num(s[k]));
    const memory = (s.memory && typeof s.memory === "object") ? s.memory : {};
    for (const model of Object.keys(memory)) {
      if (!store.mem.has(model)) {
        store.models.push(model);
        store.mem.set(model, new Array(store.t.length - 1).fill(null));
      }
    }
    for (const [model, col] of store.mem) col.push(num(memory[model]));
    store.last = s;
  }
  trim(store);
}

function trim(store) {
  if (!store.t.length) return;
  const cutoff = store.t[store.t.length - 1] - KEEP_S;
  let n = 0;
  while (n < store.t.length && store.t[n] < cutoff) n++;
  if (!n) return;
  store.t.splice(0, n);
  for (const col of store.cols.values()) col.splice(0, n);
  for (const col of store.mem.values()) col.splice(0, n);
}

/** uPlot data for one chart over the last `span` seconds. */
function chartData(store, spec, span) {
  const last = store.t.length ? store.t[store.t.length - 1] : 0;
  let i = 0;
  while (i < store.t.length && store.t[i] < last - span) i++;
  const cols = spec.series ? spec.series.map(s => store.cols.get(s.key)) : store.models.map(m => store.mem.get(m));
  return [store.t.slice(i), ...cols.map(c => c.slice(i))];
}

// ------------------------------------------------------------------ plots

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function plotOptions(spec, labels, width) {
  const muted = cssVar("--muted"), line = cssVar("--line");
  const axis = {stroke: muted, grid: {stroke: line, width: 1}, ticks: {stroke: line, width: 1}};
  const stepped = spec.stepped && uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({align: 1}) : undefined;
  return {
    width, height: HEIGHT,
    // at least a minute across, so that the first few samples do not get sub-second ticks
    scales: {x: {time: true, range: (u, min, max) => (max - min < 60 ? [max - 60, max] : [min, max])}, y: {range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1]}},
    series: [{}, ...labels.map((label, i) => ({
      label, stroke: cssVar(PALETTE[i % PALETTE.length]), width: 2, paths: stepped,
      value: (u, v) => (v === null || v === undefined ? "–" : spec.fmt(v)),
    }))],
    axes: [axis, {...axis, size: spec.axisSize || 52, ...(spec.incrs ? {incrs: spec.incrs} : {}), values: (u, splits) => splits.map(v => spec.axis(v))}],
    legend: {live: true},
    cursor: {drag: {x: false, y: false}},
  };
}

function labelsOf(store, spec) {
  return spec.series ? spec.series.map(s => s.label) : store.models.slice();
}

/** One chart panel: its uPlot lives in the data-testid="chart" container and follows its width. */
function makeChart(spec) {
  const holder = h("div", {class: "chart", "data-testid": "chart", "data-metric": spec.metric});
  const note = h("span", {class: "muted unit"}, spec.unit);
  const panel = h("section", {class: "panel chart-panel " + spec.metric}, h("header", {}, h("h2", {}, spec.title), note), holder);
  const chart = {spec, panel, holder, note, plot: null, labels: []};
  chart.observer = new ResizeObserver(() => {
    if (chart.plot) chart.plot.setSize({width: width(holder), height: HEIGHT});
  });
  chart.observer.observe(holder);
  return chart;
}

const width = el => Math.max(200, Math.floor(el.clientWidth));

function build(chart, store, span) {
  if (chart.plot) chart.plot.destroy();
  chart.labels = labelsOf(store, chart.spec);
  chart.plot = new uPlot(plotOptions(chart.spec, chart.labels, width(chart.holder)),
    chartData(store, chart.spec, span), chart.holder);
}

function update(chart, store, span) {
  const labels = labelsOf(store, chart.spec);
  if (!chart.plot || labels.join("\u0000") !== chart.labels.join("\u0000")) build(chart, store, span);
  else chart.plot.setData(chartData(store, chart.spec, span));
}

function destroy(chart) {
  chart.observer.disconnect();
  if (chart.plot) chart.plot.destroy();
  chart.plot = null;
}

// ------------------------------------------------------------------ the latest numbers

function pair(a, b, fmt) {
  return (a === null || a === undefined ? "–" : fmt(a)) + " / " + (b === null || b === undefined ? "–" : fmt(b));
}

function latest(store) {
  const s = store.last;
  if (!s) return [];
  const memory = s.memory && typeof s.memory === "object" ? Object.values(s.memory).map(num).filter(v => v !== null) : [];
  const total = memory.reduce((a, b) => a + b, 0);
  const v = k => num(s[k]);
  return [
    ["tokens_per_s", "generated tok/s", v("tokens_per_s") === null ? "–" : fmtRate(v("tokens_per_s"))],
    ["prompt_tokens_per_s", "prompt tok/s", v("prompt_tokens_per_s") === null ? "–" : fmtRate(v("prompt_tokens_per_s"))],
    ["requests_per_s", "requests/s", v("requests_per_s") === null ? "–" : v("requests_per_s").toFixed(2)],
    ["ttft", "TTFT p50 / p95", pair(v("ttft_ms_p50"), v("ttft_ms_p95"), fmtMs)],
    ["itl", "inter-token p50 / p95", pair(v("itl_ms_p50"), v("itl_ms_p95"), fmtMs)],
    ["queue", "running / waiting", pair(v("running"), v("waiting"), fmtInt)],
    ["memory", `memory (${memory.length} model${memory.length === 1 ? "" : "s"})`, memory.length ? fmtBytes(total) : "–"],
  ];
}

function renderLatest(el, store) {
  const stats = latest(store);
  if (!stats.length) return fill(el, h("p", {class: "empty"}, "No samples yet: waiting for the first one from GET /internal/stats."));
  return fill(el, stats.map(([key, label, value]) =>
    h("div", {class: "stat", "data-stat": key}, h("span", {class: "value"}, value), h("span", {class: "label"}, label))));
}

// ------------------------------------------------------------------ the view

function mount(root, ctx) {
  const store = newStore();
  let span = SPANS[0][0], dead = false, failing = false;

  const latestEl = h("div", {class: "latest", "data-testid": "chart-latest"});
  const info = h("span", {class: "muted"});
  const spanSelect = h("select", {"aria-label": "time span", onchange: () => { span = Number(spanSelect.value); redraw(); }},
    SPANS.map(([s, label]) => h("option", {value: String(s)}, label)));
  const charts = CHARTS.map(makeChart);

  root.append(
    h("section", {class: "panel"},
      h("header", {}, h("h2", {}, "Latest"), info, h("span", {class: "spacer"}), spanSelect),
      latestEl),
    h("div", {class: "chart-grid"}, charts.map(c => c.panel)));

  function redraw() {
    if (dead) return;
    renderLatest(latestEl, store);
    info.textContent = store.t.length
      ? `sampled every ${store.interval} s; percentiles over the last ${store.window} s; ${store.t.length} points kept`
      : "";
    for (const c of charts) {
      if (c.spec.windowed) c.note.textContent = `${c.spec.unit}, over requests finished in the last ${store.window} s`;
      if (!c.spec.series) c.note.textContent = c.spec.unit + (store.models.length ? "" : ": no model loaded yet");
      update(c, store, span);
    }
  }

  async function poll() {
    const since = store.t.length ? store.t[store.t.length - 1] : null;
    let body;
    try {
      body = await api(since === null ? "/internal/stats" : `/internal/stats?since=${since}`);
    } catch (e) {
      if (dead) return;
      failing = true;
      const why = e instanceof ApiError && e.status === 404
        ? "GET /internal/stats is not available on this server (404)"
        : `GET /internal/stats failed: ${e.message || e}`;
      ctx.notify(`Charts: ${why}`);
      return;
    }
    if (dead) return;
    if (failing) { failing = false; ctx.notify(null); }
    if (body && num(body.interval_s)) store.interval = body.interval_s;
    if (body && num(body.window_s)) store.window = body.window_s;
    append(store, Array.isArray(body && body.samples) ? body.samples : []);
    redraw();
  }

  // light/dark switch: the plots read their colours once, so build them again
  const scheme = window.matchMedia("(prefers-color-scheme: dark)");
  const rebuild = () => { if (!dead) charts.forEach(c => build(c, store, span)); };
  scheme.addEventListener("change", rebuild);

  redraw();
  ctx.every(1000, poll);

  return () => {
    dead = true;
    scheme.removeEventListener("change", rebuild);
    charts.forEach(destroy);
  };
}

export default {id: "charts", title: "Charts", mount};
