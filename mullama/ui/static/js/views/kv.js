// The KV cache view: a loaded model's cells, prefix-cache counters and slots (GET /api/ps, GET /internal/kv/{model}).
import {ApiError, api} from "../api.js";
import {badge, bar, fill, h, table} from "../dom.js";

const NOT_LOADED = new Set([404, 409, 503]);
const SERVING = new Set(["ready", "draining"]);
const dash = v => (v === null || v === undefined || v === "" ? "–" : String(v));
const num = v => (typeof v === "number" && isFinite(v) ? v : null);
const pct = (a, b) => (b > 0 ? ((100 * a) / b).toFixed(1) + "%" : "–");

function stat(label, value, key) {
  return h("div", {class: "stat", dataset: {stat: key}}, h("div", {class: "v"}, dash(value)), h("div", {class: "k"}, label));
}

function overview(kv) {
  const used = num(kv.cells_used) ?? 0, total = num(kv.cells_total) ?? 0;
  const hits = num(kv.prefix_hits) ?? 0, misses = num(kv.prefix_misses) ?? 0;
  const ratio = hits + misses > 0 ? pct(hits, hits + misses) : "–";
  const usage = total > 0 ? used / total : 0;
  return [
    h("div", {class: "kv-cells", dataset: {testid: "kv-cells"}},
      h("span", {class: "muted"}, "cells"),
      bar(used, total, {label: `${used} / ${total} cells used (${pct(used, total)})`,
        kind: usage > 0.9 ? "kv-full" : usage > 0.7 ? "kv-high" : ""})),
    h("div", {class: "stats", dataset: {testid: "kv-counters"}},
      stat("prefix hits", hits, "hits"),
      stat("prefix misses", misses, "misses"),
      stat("hit ratio", ratio, "hit_ratio"),
      stat("prefix evictions", kv.prefix_evictions, "evictions"),
      stat("cached tokens", kv.cached_tokens, "cached_tokens"),
      "context_shifts" in kv ? stat("context shifts", kv.context_shifts, "context_shifts") : null,
      "adapter_switches" in kv ? stat("adapter switches", kv.adapter_switches, "adapter_switches") : null,
      stat("active LoRA", kv.active_adapters || "none", "active_adapters")),
  ];
}

const adapters = a => (Array.isArray(a) ? a.map(x => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ") : String(a ?? ""));

function slotColumns(capacity, capLabel) {
  return [
    {label: "slot", class: "num", value: s => dash(s.index)},
    {label: "state", value: s => badge(dash(s.state), s.state === "idle" ? "kv-idle" : "kv-busy")},
    {label: "request", value: s => (s.request_id ? h("span", {class: "mono"}, String(s.request_id)) : h("span", {class: "muted"}, "–"))},
    {label: `occupancy (of ${capLabel})`, value: s => {
      const n = num(s.n_tokens) ?? 0;
      return bar(n, capacity || 0, {label: capacity ? `${n} / ${capacity} tokens` : `${n} tokens`});
    }},
    {label: "cached prefix", class: "num", value: s => dash(s.n_cached)},
    {label: "prompt", class: "num", value: s => dash(s.n_prompt)},
    {label: "generated", class: "num", value: s => dash(s.n_generated)},
    {label: "LoRA", value: s => adapters(s.adapters) || h("span", {class: "muted"}, "–")},
  ];
}

function slotsTable(kv, nCtx) {
  const slots = Array.isArray(kv.slots) ? kv.slots : [];
  const perSlot = num(kv.n_ctx_slot);
  const capacity = perSlot || nCtx || 0;
  const capLabel = perSlot ? "per-slot context" : nCtx ? "n_ctx" : "?";
  return table(slotColumns(capacity, capLabel), slots, {
    empty: "the runner reported no slots",
    rowAttrs: s => ({dataset: {testid: "kv-slot", slot: String(s.index ?? "")}, class: s.state === "idle" ? "idle" : "busy"}),
  });
}

export default {
  id: "kv",
  title: "KV cache",
  mount(root, ctx) {
    let loaded = [];            // [{name, n_ctx}] from /api/ps
    let listError = null;
    let chosen = ctx.params().get("model") || "";
    let gen = 0;                // a model change makes in-flight answers stale

    const select = h("select", {dataset: {testid: "kv-model"}, "aria-label": "model"});
    const status = h("span", {class: "muted", dataset: {testid: "kv-status"}});
    const body = h("div");

    let pickerKey = null;
    const renderPicker = () => {
      const names = loaded.map(m => m.name);
      if (chosen && !names.includes(chosen)) names.unshift(chosen);
      const key = JSON.stringify([names, loaded.map(m => m.state), chosen]);
      if (key === pickerKey) return;
      pickerKey = key;
      const opts = names.map(n => {
        const m = loaded.find(x => x.name === n);
        return h("option", {value: n}, !m ? `${n} (not loaded)` : m.state && m.state !== "ready" ? `${n} (${m.state})` : n);
      });
      if (!names.length) opts.push(h("option", {value: ""}, "no model loaded"));
      fill(select, opts);
      select.value = chosen;
      select.disabled = !names.length;
    };

    const message = (text, cls = "empty") => {
      status.textContent = "";
      fill(body, h("section", {class: "panel"}, h("p", {class: cls, dataset: {testid: "kv-message"}}, text,
        cls === "empty" ? [" ", h("a", {href: "#models"}, "Models")] : null)));
    };

    /** The loaded model the choice names (exactly, or 'family' for 'family:variant'); null when none. */
    const resolve = name => loaded.find(m => m.name === name) || loaded.find(m => m.name.startsWith(name + ":")) || null;

    const loadList = async () => {
      try {
        const ps = await api("/api/ps");
        loaded = (ps?.models || []).filter(m => m && m.name)
          .map(m => ({name: String(m.name), n_ctx: num(m.context_length), state: m.state}));
        listError = null;
      } catch (e) {
        listError = e.message || String(e);
      }
      const fromHash = ctx.params().get("model");
      if (fromHash && document.activeElement !== select) chosen = fromHash;
      if (!chosen && loaded.length) chosen = loaded[0].name;
      if (chosen) chosen = resolve(chosen)?.name ?? chosen;  // 'smollm2' -> 'smollm2:q4_1' once it is loaded
      if (document.activeElement !== select) renderPicker();
    };

    const showKv = (kv, nCtx) => {
      status.textContent = kv.model && kv.model !== chosen ? `(${kv.model})` : "";
      const slots = Array.isArray(kv.slots) ? kv.slots : [];
      const busy = slots.filter(s => s.state && s.state !== "idle").length;
      fill(body,
        h("section", {class: "panel"}, h("h2", {}, "Cache"), overview(kv)),
        h("section", {class: "panel"},
          h("h2", {}, "Slots ", h("span", {class: "muted"}, `${busy} / ${slots.length} busy`)),
          slotsTable(kv, nCtx)));
    };

    // Only a model /api/ps lists as serving is asked for its cache: no request (and no console error) per
    // second for a model that is not loaded.
    const poll = async () => {
      const my = ++gen;
      await loadList();
      if (my !== gen) return;
      if (!chosen) {
        message(listError ? `cannot list the loaded models: ${listError}` : "no model is loaded: load one from", listError ? "error-line" : "empty");
        return;
      }
      const entry = resolve(chosen);
      if (!listError && !entry) { message(`${chosen} is not loaded: its KV cache lives in its runner. Load it from`); return; }
      if (entry && entry.state && !SERVING.has(entry.state)) { message(`${chosen} is ${entry.state}: its KV cache appears once it is ready. See`); return; }
      let kv;
      try { kv = await api("/internal/kv/" + encodeURIComponent(entry ? entry.name : chosen)); }
      catch (e) {
        if (my !== gen) return;
        if (e instanceof ApiError && NOT_LOADED.has(e.status)) message(`${chosen} is not loaded: its KV cache lives in its runner. Load it from`);
        else message(`cannot read the KV cache of ${chosen}: ${e.message || e}`, "error-line");
        return;
      }
      if (my !== gen) return;
      showKv(kv, entry?.n_ctx ?? null);
    };

    select.addEventListener("change", () => {
      chosen = select.value;
      const p = ctx.params();
      p.set("model", chosen);
      ctx.go("kv", p.toString());
      select.blur();
      poll().catch(e => console.warn(e));
    });

    root.append(
      h("section", {class: "panel kv-head"},
        h("header", {}, h("h2", {}, "KV cache"), h("label", {}, "model", select), status)),
      body);

    ctx.every(1000, poll);
  },
};
