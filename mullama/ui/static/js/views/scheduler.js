// The Scheduler view: policy (switchable), queue, running slots, counters, preemptions (GET/POST /internal/scheduler, live events).
import {api, recentEvents} from "../api.js";
import {badge, fill, fmtMs, h, table} from "../dom.js";
import {eventFields, eventTime, kindClass} from "./events.js";

const PREEMPT_KINDS = new Set(["preempted", "resumed", "deadline_expired"]);
const PREEMPT_MAX = 50;
const SKIP = new Set(["event", "mono", "time", "model", "id"]);

const dash = v => (v === null || v === undefined || v === "" ? "–" : String(v));
const adaptersText = a => (Array.isArray(a) ? (a.length ? a.map(x => typeof x === "object" ? JSON.stringify(x) : String(x)).join(", ") : "–") : dash(a));

function deadline(ms) {
  if (ms === null || ms === undefined) return h("span", {class: "muted"}, "none");
  return ms < 0 ? h("span", {class: "late"}, `missed by ${fmtMs(-ms)}`) : fmtMs(ms);
}

const QUEUE_COLUMNS = [
  {label: "#", class: "num", value: r => dash(r.position)},
  {label: "id", value: r => h("span", {class: "mono"}, dash(r.id))},
  {label: "model", value: r => dash(r.model)},
  {label: "user", value: r => dash(r.user)},
  {label: "priority", class: "num", value: r => dash(r.priority)},
  {label: "deadline", class: "num", value: r => deadline(r.deadline_in_ms)},
  {label: "age", class: "num", value: r => fmtMs(r.age_ms)},
  {label: "state", value: r => badge(dash(r.state), r.state === "paused" ? "sched-paused" : "sched-queued")},
  {label: "preemptions", class: "num", value: r => dash(r.preemptions)},
  {label: "adapters", value: r => adaptersText(r.adapters)},
];

const RUNNING_COLUMNS = [
  {label: "slot", class: "num", value: r => (r.slot === null || r.slot === undefined ? h("span", {class: "muted", title: "the runner did not say which slot"}, "?") : String(r.slot))},
  {label: "id", value: r => (r.empty ? h("span", {class: "muted"}, "empty") : h("span", {class: "mono"}, dash(r.id)))},
  {label: "user", value: r => (r.empty ? "" : dash(r.user))},
  {label: "priority", class: "num", value: r => (r.empty ? "" : dash(r.priority))},
  {label: "age", class: "num", value: r => (r.empty ? "" : fmtMs(r.age_ms))},
  {label: "queue", class: "num", value: r => (r.empty ? "" : fmtMs(r.queue_ms))},
  {label: "preemptions", class: "num", value: r => (r.empty ? "" : dash(r.preemptions))},
];

/** n_parallel rows: the requests in slot order, requests whose slot is unknown, then the free slots. */
function slotRows(running, n) {
  const known = running.filter(r => Number.isInteger(r.slot)).sort((a, b) => a.slot - b.slot);
  const unknown = running.filter(r => !Number.isInteger(r.slot));
  const taken = new Set(known.map(r => r.slot));
  const freeCount = Math.max(0, (n || 0) - running.length);
  const free = [];
  for (let i = 0; free.length < freeCount && i < n; i++) {
    if (!taken.has(i)) free.push({empty: true, slot: unknown.length ? null : i});
  }
  return [...known, ...unknown, ...free];
}

function runningPanel(model, running, n, waiting) {
  const rows = slotRows(running, n);
  return h("div", {class: "sched-model", dataset: {model}},
    h("h3", {}, model, " ",
      h("span", {class: "muted"}, `${running.length} / ${n ?? "?"} slots busy · ${waiting ?? 0} waiting`)),
    table(RUNNING_COLUMNS, rows, {
      empty: "no slots",
      rowAttrs: r => (r.empty ? {class: "free", dataset: {testid: "running-empty"}} : {dataset: {testid: "running-row", id: String(r.id)}}),
    }));
}

function stats(counters) {
  const entries = Object.entries(counters || {});
  if (!entries.length) return h("p", {class: "empty"}, "no counters yet: nothing was submitted");
  return h("div", {class: "stats"}, entries.map(([k, v]) =>
    h("div", {class: "stat", dataset: {counter: k}}, h("div", {class: "v"}, String(v)), h("div", {class: "k"}, k.replaceAll("_", " ")))));
}

function preemptItem(record) {
  const kind = String(record.event);
  return h("li", {dataset: {event: kind, id: String(record.id ?? "")}},
    h("span", {class: "mono muted"}, eventTime(record)), " ",
    badge(kind, kindClass(kind)), " ",
    h("span", {class: "mono"}, dash(record.id)), " ",
    h("span", {}, dash(record.model)), " ",
    h("span", {class: "mono muted"}, eventFields(record, SKIP)));
}

/** Policy names: the GET answer's `policies`, else the openapi PolicyRequest enum/examples, else the current one. */
async function openapiPolicies() {
  try {
    const spec = await api("/openapi.json");
    const p = spec?.components?.schemas?.PolicyRequest?.properties?.policy || {};
    const list = p.enum || p.examples;
    return Array.isArray(list) ? list.map(String) : [];
  } catch { return []; }
}

export default {
  id: "scheduler",
  title: "Scheduler",
  mount(root, ctx) {
    let names = null, fallback = null, switching = false, failing = false;

    const select = h("select", {dataset: {testid: "policy-select"}, "aria-label": "scheduling policy"});
    const answer = h("span", {class: "muted", dataset: {testid: "policy-result"}});
    const pollState = h("span", {class: "poll-error", dataset: {testid: "scheduler-error"}, hidden: true});
    const queueBox = h("div");
    const runningBox = h("div");
    const countersBox = h("div");
    const preemptList = h("ol", {class: "preemptions", dataset: {testid: "preemptions"}});
    const preemptEmpty = h("p", {class: "empty"}, "no preemption, resume or missed deadline yet");
    const queueTitle = h("h2", {}, "Queue");

    const setPolicies = (list, current) => {
      const all = [...new Set([...list, current].filter(Boolean))];
      const key = all.join("\n");
      if (key !== names) {
        names = key;
        fill(select, all.map(p => h("option", {value: p}, p)));
      }
      if (!switching && document.activeElement !== select) select.value = current;
    };

    const poll = async () => {
      let data;
      try { data = await api("/internal/scheduler"); }
      catch (e) {
        if (!failing) ctx.notify(`scheduler: ${e.message || e}`);
        failing = true;
        pollState.textContent = `not updating: ${e.message || e}`;
        pollState.hidden = false;
        return;
      }
      if (failing) { failing = false; pollState.hidden = true; ctx.notify(null); }
      let list = Array.isArray(data.policies) ? data.policies.map(String) : null;
      if (!list) { fallback ??= await openapiPolicies(); list = fallback; }
      setPolicies(list, data.policy);

      const queue = Array.isArray(data.queue) ? [...data.queue].sort((a, b) => (a.position ?? 0) - (b.position ?? 0)) : [];
      fill(queueTitle, "Queue ", h("span", {class: "muted"}, `${queue.length} queued`));
      fill(queueBox, table(QUEUE_COLUMNS, queue, {
        empty: "the queue is empty: requests wait here when every slot of their model is busy",
        rowAttrs: r => ({dataset: {testid: "queue-row", id: String(r.id)}, class: r.state === "paused" ? "paused" : undefined}),
      }));

      const running = data.running || {}, nPar = data.n_parallel || {}, waiting = data.waiting || {};
      const models = [...new Set([...Object.keys(nPar), ...Object.keys(running)])].sort();
      fill(runningBox, models.length
        ? models.map(m => runningPanel(m, running[m] || [], nPar[m], waiting[m]))
        : h("p", {class: "empty"}, "no model is loaded: slots appear once a model serves"));
      fill(countersBox, stats(data.counters));
    };

    const addPreempt = record => {
      if (!record || !PREEMPT_KINDS.has(record.event)) return;
      preemptList.prepend(preemptItem(record));
      while (preemptList.childElementCount > PREEMPT_MAX) preemptList.lastElementChild.remove();
      preemptEmpty.hidden = true;
    };

    select.addEventListener("change", async () => {
      const policy = select.value;
      switching = true;
      select.disabled = true;
      answer.className = "muted";
      answer.textContent = `switching to ${policy}…`;
      try {
        const r = await api("/internal/scheduler", {method: "POST", body: {policy}});
        answer.textContent = `policy ${dash(r?.policy)} (was ${dash(r?.previous)})`;
      } catch (e) {
        answer.className = "poll-error";
        answer.textContent = `could not switch to ${policy}: ${e.message || e}`;
      } finally {
        switching = false;
        select.disabled = false;
        select.blur();
      }
      try { await poll(); } catch (e) { console.warn(e); }
    });

    root.append(
      h("section", {class: "panel"},
        h("header", {}, h("h2", {}, "Policy"), select, answer, h("span", {class: "spacer"}), pollState),
        countersBox),
      h("section", {class: "panel"}, queueTitle, queueBox),
      h("section", {class: "panel"}, h("h2", {}, "Running"), runningBox),
      h("section", {class: "panel"}, h("h2", {}, "Preemptions"), preemptEmpty, preemptList));

    for (const r of recentEvents) addPreempt(r);
    ctx.subscribe(addPreempt);
    ctx.every(1000, poll);
  },
};
