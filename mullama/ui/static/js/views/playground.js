// The Playground view: a streaming multi-turn chat with any model (POST /v1/chat/completions with X-Profile, models from GET /v1/models), each reply's profile as a waterfall.
import {ApiError, api, errorMessage, raw, sse} from "../api.js";
import {fill, fmtMs, h} from "../dom.js";

/** Sampling controls: only the ones the user filled in are sent. */
const SAMPLING = [
  {name: "temperature", hint: "e.g. 0.7", kind: "number"},
  {name: "top_p", hint: "0–1", kind: "number"},
  {name: "top_k", hint: "e.g. 40", kind: "number"},
  {name: "max_tokens", hint: "e.g. 256", kind: "number"},
  {name: "seed", hint: "random", kind: "number"},
  {name: "stop", hint: "a, b", kind: "list", title: "comma-separated stop strings; \\n stands for a newline"},
];
const PHASES = [["queue", "queue_ms"], ["load", "load_ms"], ["prefill", "prefill_ms"], ["decode", "decode_ms"]];
const NUMBERS = [
  ["prompt_tokens", "prompt tokens", String], ["completion_tokens", "completion tokens", String],
  ["kv_cache_hit", "cache hit", String], ["kv_cache_miss", "cache miss", String],
  ["tokens_per_second", "tokens/s", v => Number(v).toFixed(1)], ["time_to_first_token_ms", "TTFT", phaseMs],
  ["inter_token_ms_p50", "inter-token p50", phaseMs], ["inter_token_ms_p95", "inter-token p95", phaseMs],
  ["total_ms", "total", phaseMs], ["slot", "slot", String], ["preemptions", "preemptions", String],
  ["scheduler", "scheduler", String],
];

function phaseMs(v) {
  const n = Number(v);
  if (!isFinite(n)) return "–";
  return n < 10_000 ? n.toFixed(1) + " ms" : fmtMs(n);
}

/** The filled-in sampling values: numbers as numbers; anything else goes as typed and the server judges it. */
function samplingValues(inputs) {
  const out = {};
  for (const spec of SAMPLING) {
    const text = inputs[spec.name].value.trim();
    if (!text) continue;
    if (spec.kind === "list") {
      const stops = text.split(",").map(s => s.trim().replace(/\\n/g, "\n")).filter(Boolean);
      if (stops.length) out.stop = stops;
    } else {
      const n = Number(text);
      out[spec.name] = Number.isFinite(n) ? n : text;
    }
  }
  return out;
}

// ------------------------------------------------------------------ the profile waterfall

function waterfall(profile) {
  const ms = PHASES.map(([, key]) => Math.max(0, Number(profile[key]) || 0));
  const sum = ms.reduce((a, b) => a + b, 0);
  const axis = Math.max(sum, Number(profile.total_ms) || 0) || 1;
  let start = 0;
  const rows = PHASES.map(([phase], i) => {
    const left = (100 * start) / axis, width = (100 * ms[i]) / axis;
    start += ms[i];
    const place = left + width <= 70 ? "after" : left >= 30 ? "before" : "inside";
    return h("div", {class: "wf-row"},
      h("span", {class: "wf-name"}, phase),
      h("div", {class: "wf-track"},
        h("div", {class: `wf-bar ${phase} ${place}`, "data-testid": "pg-phase", "data-phase": phase,
          "data-ms": String(ms[i]), title: `${phase}: ${phaseMs(ms[i])}`,
          style: {left: left.toFixed(3) + "%", width: width.toFixed(3) + "%"}},
        h("span", {class: "wf-ms"}, phaseMs(ms[i])))));
  });
  const ticks = h("div", {class: "wf-row wf-axis"}, h("span", {class: "wf-name"}),
    h("div", {class: "wf-track"},
      h("span", {class: "tick", style: {left: "0%"}}, "0"),
      h("span", {class: "tick mid", style: {left: "50%"}}, phaseMs(axis / 2)),
      h("span", {class: "tick end", style: {left: "100%"}}, "total " + phaseMs(axis))));
  const numbers = h("div", {class: "pg-numbers"}, NUMBERS.filter(([key]) => profile[key] !== undefined && profile[key] !== null)
    .map(([key, label, fmt]) => h("span", {class: "num-item", "data-field": key},
      h("span", {class: "k"}, label), " ", h("span", {class: "v"}, fmt(profile[key])))));
  return [h("div", {class: "wf"}, rows, ticks), numbers];
}

function renderProfile(el, profile) {
  if (profile && typeof profile === "object") return fill(el, waterfall(profile));
  return fill(el, h("p", {class: "muted"}, "No profile in the response (it comes with the X-Profile: 1 request header)."));
}

// ------------------------------------------------------------------ conversation elements

function userMessage(text) {
  return h("div", {class: "msg user"}, h("div", {class: "role"}, "you"), h("div", {class: "text"}, text));
}

function assistantMessage(model) {
  const turn = {
    reasoningText: h("div", {class: "text"}),
    text: h("div", {class: "text", "data-testid": "pg-reply"}),
    meta: h("div", {class: "pg-meta muted", "data-testid": "pg-meta"}),
    finish: h("span", {"data-testid": "pg-finish"}),
    rate: h("span", {class: "rate"}),
    profile: h("div", {class: "pg-profile", "data-testid": "pg-profile"}),
  };
  turn.reasoning = h("details", {class: "reasoning", hidden: true}, h("summary", {}, "reasoning"), turn.reasoningText);
  fill(turn.meta, turn.finish, turn.rate);
  turn.el = h("div", {class: "msg assistant streaming"}, h("div", {class: "role"}, model),
    turn.reasoning, turn.text, turn.meta, turn.profile);
  return turn;
}

function errorLine(message) {
  return h("div", {class: "msg error", "data-testid": "pg-error", role: "alert"},
    h("div", {class: "role"}, "error"), h("div", {class: "text"}, message));
}

function describe(e) {
  if (e instanceof ApiError) return `${e.status}: ${e.message}`;
  return String((e && e.message) || e);
}

// ------------------------------------------------------------------ streaming one reply

/** Read the SSE stream into the turn; returns {content, finish, usage, profile}. */
async function readStream(resp, turn, onDelta) {
  const out = {content: "", finish: null, usage: null, profile: null};
  if (!(resp.headers.get("Content-Type") || "").includes("event-stream")) {
    const body = await resp.json();  // a server that answered without streaming
    const choice = (body.choices || [])[0] || {};
    out.content = (choice.message && choice.message.content) || "";
    turn.text.textContent = out.content;
    return {...out, finish: choice.finish_reason || null, usage: body.usage || null, profile: body.profile || null};
  }
  for await (const msg of sse(resp)) {
    if (msg.data === "[DONE]") break;
    let chunk;
    try { chunk = JSON.parse(msg.data); } catch { continue; }
    if (chunk.error) throw new Error(errorMessage(chunk, "the stream reported an error"));
    const choice = (chunk.choices || [])[0];
    const delta = (choice && choice.delta) || {};
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content) {
      turn.reasoning.hidden = false;
      turn.reasoningText.textContent += delta.reasoning_content;
      onDelta();
    }
    if (typeof delta.content === "string" && delta.content) {
      out.content += delta.content;
      turn.text.textContent = out.content;
      onDelta();
    }
    if (choice && choice.finish_reason) out.finish = choice.finish_reason;
    if (chunk.usage) out.usage = chunk.usage;
    if (chunk.profile) out.profile = chunk.profile;
    else if (chunk.usage && chunk.usage.profile) out.profile = chunk.usage.profile;
  }
  return out;
}

// ------------------------------------------------------------------ the view

function mount(root, ctx) {
  let history = [];       // [{role, content}] sent with each request (the system prompt is added in front)
  let controller = null;  // the AbortController of the reply in flight
  let epoch = 0;          // bumped by "Clear chat": a reply that ends after it leaves the new history alone

  const modelSelect = h("select", {"data-testid": "pg-model", "aria-label": "model"},
    h("option", {value: ""}, "loading models…"));
  const system = h("textarea", {rows: 4, "data-testid": "pg-system", placeholder: "optional, e.g. You are a helpful assistant."});
  const inputs = Object.fromEntries(SAMPLING.map(s => [s.name,
    h("input", {type: "text", inputmode: s.kind === "number" ? "decimal" : "text", name: s.name,
      placeholder: s.hint, title: s.title, "data-testid": "pg-" + s.name.replace("_", "-"), autocomplete: "off"})]));
  const extra = h("textarea", {rows: 3, "data-testid": "pg-extra", spellcheck: false, class: "mono",
    placeholder: '{"grammar": "root ::= ...", "response_format": {...}, "lora": [...]}'});
  const log = h("div", {class: "pg-log", "data-testid": "pg-log", "aria-live": "polite"});
  const input = h("textarea", {rows: 3, "data-testid": "pg-input", placeholder: "Message (Enter sends, Shift+Enter newline)",
    onkeydown: e => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
    }});
  const sendButton = h("button", {type: "button", "data-testid": "pg-send", onclick: () => send()}, "Send");
  const stopButton = h("button", {type: "button", class: "ghost", "data-testid": "pg-stop", disabled: true,
    onclick: () => controller && controller.abort()}, "Stop");
  const clearButton = h("button", {type: "button", class: "ghost", "data-testid": "pg-clear", onclick: clear}, "Clear chat");

  root.append(h("div", {class: "pg-layout"},
    h("section", {class: "panel pg-chat"},
      h("header", {}, h("h2", {}, "Conversation"), h("span", {class: "spacer"}), clearButton),
      log,
      h("div", {class: "pg-compose"}, input,
        h("div", {class: "row"}, sendButton, stopButton, h("span", {class: "muted hint"}, "Enter sends · Shift+Enter newline")))),
    h("section", {class: "panel pg-settings"},
      h("h2", {}, "Settings"),
      h("label", {class: "stacked"}, "Model", modelSelect),
      h("label", {class: "stacked"}, "System prompt", system),
      h("div", {class: "pg-sampling"}, SAMPLING.map(s => h("label", {class: "stacked"}, s.name, inputs[s.name]))),
      h("label", {class: "stacked"}, "More request fields (JSON object, merged into the body)", extra),
      h("p", {class: "muted small"}, "Empty fields are not sent: the model's defaults apply."))));
  clear();
  loadModels();

  async function loadModels() {
    const wanted = ctx.params().get("model");
    let ids = [];
    try {
      const body = await api("/v1/models");
      ids = ((body && body.data) || []).map(m => m && m.id).filter(id => typeof id === "string");
    } catch (e) {
      ctx.notify(`Playground: could not list the models (GET /v1/models): ${describe(e)}`);
    }
    if (wanted && !ids.includes(wanted)) ids.unshift(wanted);
    if (!ids.length) return fill(modelSelect, h("option", {value: ""}, "no models available"));
    fill(modelSelect, ids.map(id => h("option", {value: id}, id)));
    modelSelect.value = wanted || ids[0];
  }

  // the log follows new text while the user has not scrolled up
  let follow = true;
  log.addEventListener("scroll", () => { follow = log.scrollHeight - log.scrollTop - log.clientHeight < 40; });
  function scrolled() { if (follow) log.scrollTop = log.scrollHeight; }
  function add(el) {
    const empty = log.querySelector(".empty");
    if (empty) empty.remove();
    log.append(el);
    scrolled();
  }

  function clear() {
    if (controller) controller.abort();
    epoch++;
    history = [];
    fill(log, h("p", {class: "empty"}, "No messages yet: pick a model, type a message below and press Enter."));
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
  }

  async function send() {
    const text = input.value.trim();
    const model = modelSelect.value;
    if (!text || controller) return;
    if (!model) { add(errorLine("Pick a model first (none is listed by GET /v1/models).")); return; }
    let more = {};
    if (extra.value.trim()) {
      try { more = JSON.parse(extra.value); } catch (e) { more = null; }
      if (!more || typeof more !== "object" || Array.isArray(more)) {
        add(errorLine("More request fields: write a JSON object, e.g. {\"seed\": 1}."));
        return;
      }
    }
    input.value = "";
    follow = true;
    const userEl = userMessage(text);
    add(userEl);
    history.push({role: "user", content: text});
    const turn = assistantMessage(model);
    add(turn.el);
    const messages = (system.value.trim() ? [{role: "system", content: system.value}] : []).concat(history);
    const body = {...more, model, messages, stream: true, stream_options: {include_usage: true},
      ...samplingValues(inputs)};

    const mine = controller = new AbortController();
    const myEpoch = epoch;
    setBusy(true);
    const started = performance.now();
    let first = null, deltas = 0;
    turn.finish.textContent = "waiting…";
    const onDelta = () => {
      const now = performance.now();
      if (first === null) first = now;
      deltas++;
      const rate = deltas > 1 && now > first ? ((deltas - 1) * 1000) / (now - first) : null;
      turn.finish.textContent = "streaming…";
      turn.rate.textContent = ` · ${deltas} chunks` + (rate ? ` · ${rate.toFixed(1)} tok/s` : "");
      scrolled();
    };
    let result = null, failure = null, stopped = false;
    try {
      const resp = await raw("/v1/chat/completions", {method: "POST", body, signal: mine.signal,
        accept: "text/event-stream", headers: {"X-Profile": "1"}});
      result = await readStream(resp, turn, onDelta);
    } catch (e) {
      if (e && e.name === "AbortError") stopped = true; else failure = e;
    } finally {
      if (controller === mine) controller = null;
      setBusy(false);
    }
    if (myEpoch !== epoch) return;  // the chat was cleared meanwhile
    const content = result ? result.content : turn.text.textContent;
    turn.el.classList.remove("streaming");
    if (!content && (failure || stopped)) {
      // nothing came back: the turn is taken out of the history so the next message does not carry it
      turn.el.remove();
      history.pop();
      userEl.classList.add("unsent");
      if (!input.value) input.value = text;
      add(failure ? errorLine(describe(failure)) : errorLine("Stopped before the model answered."));
      return;
    }
    history.push({role: "assistant", content});
    finishTurn(turn, result, {started, first, deltas, stopped, failure});
  }

  function finishTurn(turn, result, {started, first, deltas, stopped, failure}) {
    const usage = result && result.usage;
    const profile = result && result.profile;
    const finish = stopped ? "stopped" : failure ? "error" : (result && result.finish) || "unknown";
    turn.finish.textContent = "finish: " + finish;
    const tokens = usage && usage.completion_tokens !== undefined ? usage.completion_tokens : "≈" + deltas;
    const tps = profile && profile.tokens_per_second !== undefined ? Number(profile.tokens_per_second) : null;
    turn.rate.textContent = ` · ${tokens} tokens` + (tps !== null ? ` · ${tps.toFixed(1)} tok/s` : "") +
      (first !== null ? ` · first text after ${fmtMs(first - started)} (browser)` : "");
    if (stopped || failure) {
      turn.profile.replaceChildren();
      if (failure) add(errorLine(describe(failure)));
      return;
    }
    renderProfile(turn.profile, profile);
    scrolled();
  }

  return () => { if (controller) controller.abort(); };
}

export default {id: "playground", title: "Playground", mount};
