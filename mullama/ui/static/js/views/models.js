// Models: device memory, one live card per model (state, memory, slots, keep-alive, actions), variants,
// pulls. Reads GET /internal/models, GET /api/models; POSTs /api/load, /api/unload, /api/pull,
// /internal/models/{name}/pin, /internal/models/{family}/variant.
import {api, ndjson, raw} from "../api.js";
import {badge, bar, fill, fmtBytes, fmtDuration, fmtMs, fmtTime, h, table} from "../dom.js";

const REFRESH_EVENTS = new Set(["model_loading", "model_warming", "model_ready", "model_failed", "model_evicted",
  "model_unloaded", "runner_crashed", "runner_unresponsive", "swap", "prefetch", "model_deleted", "pull_done"]);
const SERVING = new Set(["ready", "draining"]);

/** The total bytes of the device a model's memory entry names (the runner's own total when the row has it). */
function deviceTotal(dev, devices) {
  if (dev.total) return dev.total;
  if (!devices) return 0;
  if (dev.type === "cpu" || /cpu/i.test(dev.device)) return devices.host?.ram_total || 0;
  const gpus = devices.gpus || [];
  const n = Number((/(\d+)$/.exec(dev.device) || [])[1]);
  return (gpus.find(g => g.index === n) || gpus[0] || {}).total || 0;
}

function keepAliveText(m) {
  if (!m || !SERVING.has(m.state)) return {text: "–"};
  if (m.pinned) return {text: "pinned: never unloads"};
  if (m.keep_alive < 0) return {text: "forever"};
  if (m.in_flight > 0 || m.waiting > 0) return {text: "while in use, then " + fmtDuration(m.keep_alive)};
  if (m.expires_at) return {text: countdown(m.expires_at), expires: m.expires_at};
  return {text: m.keep_alive === 0 ? "unloads when idle" : "–"};
}

function countdown(expires) {
  const left = expires - Date.now() / 1000;
  return left > 0 ? "unloads in " + fmtDuration(left) : "unloading…";
}

function kv(label, value, attrs = {}) {
  return [h("dt", {}, label), h("dd", attrs, value)];
}

export default {
  id: "models",
  title: "Models",
  mount(root, ctx) {
    const state = {catalog: [], internal: null, pending: new Set(), errors: new Map(), pollFailed: false};
    const cards = new Map();  // name -> {sig, el}
    const memEl = h("div", {class: "devices"});
    const variantsPanel = h("section", {class: "panel", hidden: true});
    const cardsEl = h("div", {class: "cards"});
    const presetsEl = h("div", {class: "presets"});
    const sigs = {};

    root.append(
      h("section", {class: "panel"}, h("h2", {}, "Devices and memory"), memEl),
      variantsPanel,
      h("section", {class: "panel"},
        h("header", {}, h("h2", {}, "Models"), h("span", {class: "spacer"}), pullForm()),
        cardsEl, presetsEl),
      h("p", {class: "muted"}, "Prefetch predictions and the load history are on the ",
        h("a", {href: "#timeline"}, "Timeline"), "."));

    // ---------------------------------------------------------------- data
    let running = null, again = false;
    async function refresh() {
      if (running) { again = true; return running; }
      running = (async () => {
        try {
          const [internal, catalog] = await Promise.all([api("/internal/models"), api("/api/models")]);
          state.internal = internal;
          state.catalog = (catalog && catalog.models) || [];
          if (state.pollFailed) { state.pollFailed = false; ctx.notify(null); }
          render();
        } catch (e) {
          state.pollFailed = true;
          ctx.notify("models: " + (e.message || e));
        }
      })();
      await running;
      running = null;
      if (again) { again = false; await refresh(); }
    }
    let soon = null;
    const refreshSoon = () => { clearTimeout(soon); soon = setTimeout(refresh, 150); };

    ctx.every(2000, refresh);
    ctx.every(1000, tick);
    ctx.subscribe(rec => { if (REFRESH_EVENTS.has(rec.event)) refreshSoon(); });

    function tick() {
      for (const el of cardsEl.querySelectorAll("[data-expires]")) el.textContent = countdown(Number(el.dataset.expires));
    }

    /** Replace a part only when what it shows changed (keeps open selects and focus). */
    function update(key, el, data, build) {
      const sig = JSON.stringify(data);
      if (sigs[key] === sig) return;
      sigs[key] = sig;
      fill(el, build());
    }

    // ---------------------------------------------------------------- actions
    async function act(name, fn, label) {
      if (state.pending.has(name)) return;
      state.pending.add(name);
      state.errors.delete(name);
      render();
      try {
        await fn();
      } catch (e) {
        state.errors.set(name, `${label} failed: ${e.message || e}`);
      } finally {
        state.pending.delete(name);
        render();
        refreshSoon();
      }
    }
    const post = (path, body) => api(path, {method: "POST", body});
    const load = name => act(name, () => post("/api/load", {model: name}), "load");
    const unload = name => act(name, () => post("/api/unload", {model: name}), "unload");
    const pin = (name, pinned) => act(name, () => post(`/internal/models/${encodeURIComponent(name)}/pin`, {pinned}),
      pinned ? "pin" : "unpin");
    const switchVariant = (family, variant) => act("family:" + family,
      () => post(`/internal/models/${encodeURIComponent(family)}/variant`, {variant}), "variant switch");

    // ---------------------------------------------------------------- rendering
    function render() {
      const internal = state.internal;
      if (!internal) return;
      const live = new Map((internal.models || []).map(m => [m.name, m]));
      renderDevices(internal, live);
      renderVariants(internal);
      const rows = state.catalog.filter(c => c.source !== "preset");
      const names = new Set(rows.map(r => r.name));
      for (const m of live.values()) if (!names.has(m.name)) rows.push({name: m.name, family: m.family, variant: m.variant});
      renderCards(rows, live, internal);
      update("presets", presetsEl, state.catalog.filter(c => c.source === "preset"), () => presetRows(live));
    }

    function renderDevices(internal, live) {
      const held = [...live.values()].reduce((sum, m) => sum + (m.memory || 0), 0);
      const data = {d: internal.devices, b: internal.memory_budget, x: internal.max_loaded_models, held,
        n: [...live.values()].filter(m => SERVING.has(m.state)).length};
      update("devices", memEl, data, () => devicesPanel(data));
    }

    function devicesPanel({d, b, x, held, n}) {
      if (!d) return h("p", {class: "empty"}, "no device information from /internal/models");
      // the budget bounds all loaded models together: a device's bar marks it only where models go to that device alone
      const gpus = d.gpus || [];
      const markOf = total => (b && b <= total ? b : null);
      const rows = gpus.map(g => deviceRow(`GPU ${g.index}`, g.name, g.total - g.free, g.total,
        gpus.length === 1 ? markOf(g.total) : null));
      const host = d.host || {};
      rows.push(deviceRow("RAM", d.cpu_only ? "host (CPU only)" : "host",
        host.ram_total - host.ram_available, host.ram_total, d.cpu_only ? markOf(host.ram_total) : null));
      if (host.swap_total) rows.push(deviceRow("swap", "", host.swap_total - host.swap_free, host.swap_total, null));
      rows.push(h("div", {class: "device"}, h("span", {class: "dev-name"}, "loaded models"),
        b ? bar(held, b, {label: `${fmtBytes(held)} of the ${fmtBytes(b)} budget`, kind: "budget"})
          : h("span", {}, `${fmtBytes(held)} held · no memory budget (free memory decides)`),
        h("span", {class: "muted"}, `${n} loaded · max loaded models: ${x ? x : "no limit"}`)));
      return rows;
    }

    function deviceRow(label, name, used, total, mark) {
      const text = `${fmtBytes(used)} used of ${fmtBytes(total)}` + (mark ? ` · budget ${fmtBytes(mark)}` : "");
      return h("div", {class: "device", dataset: {device: label}},
        h("span", {class: "dev-name"}, label, name ? h("span", {class: "muted"}, " " + name) : null),
        bar(used, total, {label: text, mark}), h("span", {class: "muted"}, `${fmtBytes(total - used)} free`));
    }

    function renderVariants(internal) {
      const families = new Map();
      for (const c of state.catalog) {
        if (c.source === "preset" || !c.family || !c.variant) continue;
        if (!families.has(c.family)) families.set(c.family, []);
        families.get(c.family).push(c.variant);
      }
      const multi = [...families].filter(([, vs]) => vs.length > 1);
      variantsPanel.hidden = !multi.length;
      const serving = internal.serving_variants || {};
      const swaps = internal.swaps || [];
      const pending = multi.filter(([f]) => state.pending.has("family:" + f)).map(([f]) => f);
      const errs = multi.map(([f]) => state.errors.get("family:" + f) || "");
      update("variants", variantsPanel, {multi, serving, swaps, pending, errs}, () => [
        h("h2", {}, "Variants"),
        table([
          {label: "family", value: ([f]) => f},
          {label: "serving variant", value: ([f, vs]) => variantSelect(f, vs, serving[f])},
          {label: "last swap", value: ([f]) => lastSwap(swaps.filter(s => s.family === f).pop())},
          {label: "", value: ([f]) => state.errors.has("family:" + f)
            ? h("span", {class: "error"}, state.errors.get("family:" + f)) : ""},
        ], multi)]);
    }

    function variantSelect(family, variants, current) {
      const busy = state.pending.has("family:" + family);
      const sel = h("select", {"data-testid": "variant-select", dataset: {family}, disabled: busy,
        onchange: () => { if (sel.value) switchVariant(family, sel.value); }},
        current ? null : h("option", {value: "", selected: true}, "default (server's choice)"),
        variants.map(v => h("option", {value: v, selected: v === current}, v)));
      return h("span", {class: "row"}, sel, busy ? h("span", {class: "muted"}, "switching…") : null);
    }

    function lastSwap(s) {
      if (!s) return h("span", {class: "muted"}, "none yet");
      return `${fmtTime(s.at)}: ${s.previous} → ${s.model} (${s.mode}, ${fmtMs(s.swap_ms)})`;
    }

    function renderCards(rows, live, internal) {
      if (!rows.length) {
        cards.clear();
        update("cards", cardsEl, [], () => h("p", {class: "empty"},
          "no models in the catalog: put GGUF files in a models dir or pull one"));
        return;
      }
      sigs.cards = null;
      const serving = internal.serving_variants || {};
      const d = internal.devices || {};
      const devs = {host: {ram_total: (d.host || {}).ram_total}, gpus: (d.gpus || []).map(g => ({index: g.index, total: g.total}))};
      const els = rows.map(c => {
        const m = live.get(c.name) || null;
        const data = {c, m, p: state.pending.has(c.name), e: state.errors.get(c.name) || null,
          sv: serving[c.family] || null, devs};
        const sig = JSON.stringify(data);
        let entry = cards.get(c.name);
        if (!entry || entry.sig !== sig) {
          entry = {sig, el: modelCard(data)};
          cards.set(c.name, entry);
        }
        return entry.el;
      });
      for (const name of [...cards.keys()]) if (!rows.some(r => r.name === name)) cards.delete(name);
      if (els.length !== cardsEl.children.length || els.some((el, i) => cardsEl.children[i] !== el)) {
        cardsEl.replaceChildren(...els);
      }
      tick();
    }

    function modelCard({c, m, p, e, sv, devs}) {
      const st = (m && m.state) || c.state || "discovered";
      const ka = keepAliveText(m);
      const cfg = (m && m.config) || {};
      const loaded = m && SERVING.has(st);
      const busy = p || st === "loading" || st === "warming";
      const lastLoad = m && [...(m.loads || [])].reverse().find(l => l.ok && l.load_ms);
      return h("article", {class: "card model", "data-testid": "model-card", "data-model": c.name, dataset: {state: st}},
        h("header", {class: "row"},
          h("h3", {}, c.name),
          h("span", {class: "badge " + st, "data-testid": "model-state"}, st),
          m && m.pinned ? badge("pinned", "flag") : null,
          cfg.preload ? badge("preloaded", "flag") : null,
          sv && sv === c.variant ? badge("serving variant", "flag") : null),
        h("p", {class: "muted meta"}, [c.family, c.variant, c.parameters_label, c.quantization,
          c.size ? fmtBytes(c.size) : null, c.source].filter(Boolean).join(" · ")),
        st === "loading" || st === "warming"
          ? h("div", {class: "row"}, h("progress", {max: 1, value: m ? m.progress || 0 : 0}),
            h("span", {class: "muted"}, `${Math.round(100 * ((m && m.progress) || 0))}% ${st}`))
          : null,
        h("dl", {class: "facts"},
          kv("processor", m && m.placement ? m.placement.processor : "–"),
          kv("context", m && m.n_ctx ? String(m.n_ctx) : c.context_length ? `max ${c.context_length}` : "–"),
          kv("slots", cfg.n_parallel ? String(cfg.n_parallel) : "–"),
          kv("cores", m && m.cpu ? `${coreList(m.cpu.cores)} · ${m.cpu.threads} thread${m.cpu.threads === 1 ? "" : "s"}` : "–"),
          kv("in flight", m ? `${m.in_flight}` + (m.waiting ? ` (+${m.waiting} waiting)` : "") : "–"),
          kv("keep-alive", ka.text, ka.expires ? {"data-expires": String(ka.expires), class: "countdown"} : {}),
          kv("memory", m && m.memory ? fmtBytes(m.memory) : "–"),
          kv("prefix caches", m && m.cache_ram != null ? `up to ${fmtBytes(m.cache_ram)} in RAM` : "–"),
          kv("loads", m ? `${(m.loads || []).filter(l => !l.crash).length}` +
            (lastLoad ? ` · last ${fmtMs(lastLoad.load_ms)}` : "") : "0"),
          kv("crashes", m ? String(m.crashes || 0) : "0", m && m.crashes ? {class: "bad"} : {})),
        m && m.placement && (m.placement.layers_per_gpu || []).length ? h("p", {class: "muted small plan"}, planText(m.placement)) : null,
        m && m.devices && m.devices.length ? h("div", {class: "mem"}, m.devices.map(d => memRow(d, devs))) : null,
        m && m.error && !(e && e.endsWith(m.error)) ? h("p", {class: "error"}, m.error)
          : c.error ? h("p", {class: "error"}, c.error) : null,
        e ? h("p", {class: "error", "data-testid": "action-error"}, e) : null,
        h("div", {class: "row actions"},
          h("button", {type: "button", "data-action": "load", disabled: busy || loaded, onclick: () => load(c.name)}, "Load"),
          h("button", {type: "button", class: "ghost", "data-action": "unload", disabled: p || !m || !loaded,
            onclick: () => unload(c.name)}, "Unload"),
          m && m.pinned
            ? h("button", {type: "button", class: "ghost", "data-action": "unpin", disabled: p, onclick: () => pin(c.name, false)}, "Unpin")
            : h("button", {type: "button", class: "ghost", "data-action": "pin", disabled: p, onclick: () => pin(c.name, true)}, "Pin"),
          p ? h("span", {class: "muted"}, "working…") : null,
          h("span", {class: "spacer"}),
          h("a", {href: "#timeline", class: "muted"}, "timeline")));
    }

    function planText(pl) {
      const gpus = pl.layers_per_gpu.map((n, i) => `GPU ${i}: ${n} layers, ${fmtBytes(pl.gpu_bytes[i])}`);
      return `placement: ${pl.n_gpu_layers} layers offloaded · ${gpus.join(" · ")} · CPU ${fmtBytes(pl.cpu_bytes)}`;
    }

    function memRow(d, devs) {
      const used = (d.model || 0) + (d.context || 0) + (d.compute || 0);
      const total = deviceTotal(d, devs);
      const parts = `weights ${fmtBytes(d.model)} · KV ${fmtBytes(d.context)} · compute ${fmtBytes(d.compute)}`;
      return h("div", {class: "mem-row", dataset: {device: d.device}, title: parts},
        bar(used, total, {label: `${d.device}: ${fmtBytes(used)}` + (total ? ` of ${fmtBytes(total)}` : "")}),
        h("span", {class: "muted small"}, parts));
    }

    function presetRows(live) {
      const presets = state.catalog.filter(c => c.source === "preset");
      if (!presets.length) return null;
      return [h("h3", {}, "Presets"), table([
        {label: "preset", value: r => r.name},
        {label: "base", value: r => r.base || (r.preset && r.preset.from) || "–"},
        {label: "state of base", value: r => badge((live.get(r.base) || {}).state || r.state || "discovered")},
        {label: "system prompt", value: r => h("span", {class: "muted clip"}, (r.preset && r.preset.system) || "")},
        {label: "", value: r => r.error ? h("span", {class: "error"}, r.error) : ""},
      ], presets, {rowAttrs: r => ({"data-testid": "preset-row", "data-model": r.name})})];
    }

    // ---------------------------------------------------------------- pull
    function pullForm() {
      const input = h("input", {name: "model", placeholder: "org/repo-GGUF[:QUANT]", required: true, size: 34,
        autocomplete: "off"});
      const button = h("button", {type: "submit"}, "Pull");
      const progress = h("progress", {"data-testid": "pull-progress", max: 1, hidden: true});
      const status = h("span", {class: "pull-status muted", "data-testid": "pull-status"});
      const form = h("form", {class: "row pull", "data-testid": "pull-form", onsubmit: ev => {
        ev.preventDefault();
        pull(input.value.trim(), {input, button, progress, status});
      }}, h("span", {class: "muted small"}, "pull from Hugging Face:"), input, button, progress, status);
      return form;
    }

    async function pull(name, {input, button, progress, status}) {
      if (!name) return;
      input.disabled = button.disabled = true;
      progress.hidden = false;
      progress.removeAttribute("value");
      status.className = "pull-status muted";
      status.textContent = `pulling ${name}…`;
      const fail = msg => { status.className = "pull-status error"; status.textContent = `pull failed: ${msg}`; progress.hidden = true; };
      try {
        const resp = await raw("/api/pull", {method: "POST", body: {model: name, stream: true},
          accept: "application/x-ndjson"});
        let ok = false;
        for await (const line of ndjson(resp)) {
          if (line.error) { fail(line.error); return; }
          if (line.total) { progress.max = line.total; progress.value = line.completed || 0; }
          status.textContent = line.total
            ? `${line.status}: ${fmtBytes(line.completed || 0)} of ${fmtBytes(line.total)}` : String(line.status || "");
          if (line.status === "success") ok = true;
        }
        if (!ok) { fail("the stream ended before \"success\""); return; }
        progress.max = 1; progress.value = 1;
        status.textContent = `pulled ${name}`;
        refreshSoon();
      } catch (e) {
        fail(e.message || String(e));
      } finally {
        input.disabled = button.disabled = false;
      }
    }

    return () => clearTimeout(soon);
  },
};

// "0-3", "0,2,5": the cores a runner's threads are pinned to (the server's cpu_allotment).
function coreList(cores) {
  const runs = [];
  for (const c of cores) {
    const last = runs[runs.length - 1];
    if (last && c === last[1] + 1) last[1] = c; else runs.push([c, c]);
  }
  return runs.map(([a, b]) => (a === b ? String(a) : `${a}-${b}`)).join(",");
}
