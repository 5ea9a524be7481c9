// The one way the dashboard talks to the server: the public API, with the API key the user gave (if the
// server asks for one), sent as any client sends it. No private channel.

const KEY = "mullama.apiKey";
const keyListeners = [];

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}
/** Called with no arguments when the server answers 401: the shell asks for a key. */
export function onUnauthorized(fn) { keyListeners.push(fn); }

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}, json = false) {
  const out = {...extra};
  const key = apiKey();
  if (key) out.Authorization = "Bearer " + key;
  if (json) out["Content-Type"] = "application/json";
  return out;
}

/** The message of an error body in any of the API's shapes (OpenAI, Ollama, Anthropic). */
export function errorMessage(body, fallback) {
  if (!body || typeof body !== "object") return fallback;
  const e = body.error;
  if (typeof e === "string") return e;
  if (e && typeof e.message === "string") return e.message;
  return fallback;
}

async function check(resp) {
  if (resp.ok) return resp;
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (resp.status === 401) keyListeners.forEach(fn => fn());
  throw new ApiError(resp.status, errorMessage(body, `${resp.status} ${resp.statusText}`), body);
}

/** JSON request: api("/internal/models"), api("/api/load", {method: "POST", body: {...}}). */
export async function api(path, {method = "GET", body, signal} = {}) {
  const resp = await check(await fetch(path, {
    method, signal, headers: headers({Accept: "application/json"}, body !== undefined),
    body: body !== undefined ? JSON.stringify(body) : undefined,
  }));
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** The raw response (streams, text bodies such as /metrics); ``headers`` adds request headers (X-Profile). */
export async function raw(path, {method = "GET", body, signal, accept = "*/*", headers: extra = {}} = {}) {
  return check(await fetch(path, {
    method, signal, headers: headers({Accept: accept, ...extra}, body !== undefined),
    body: body !== undefined ? JSON.stringify(body) : undefined,
  }));
}

async function* lines(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += decoder.decode(value, {stream: true});
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** Server-sent events from a fetch response (EventSource cannot send an API key): yields {event, data}. */
export async function* sse(resp) {
  let event = "message", data = [];
  for await (const line of lines(resp)) {
    if (line === "") {
      if (data.length) yield {event, data: data.join("\n")};
      event = "message"; data = [];
    } else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    else if (line.startsWith("event:")) event = line.slice(6).trim();
  }
  if (data.length) yield {event, data: data.join("\n")};
}

/** Newline-delimited JSON (Ollama's streams, e.g. /api/pull): yields parsed objects. */
export async function* ndjson(resp) {
  for await (const line of lines(resp)) if (line.trim()) yield JSON.parse(line);
}

// ------------------------------------------------------------------ the live event stream

const subscribers = new Set();
const statusListeners = new Set();
let started = false;

/** fn(record) for every event of GET /internal/events (the last 500 first); returns an unsubscribe. */
export function subscribe(fn) {
  subscribers.add(fn);
  if (!started) { started = true; follow(); }
  return () => subscribers.delete(fn);
}

/** fn(state) with "live" | "reconnecting" | "unauthorized" as the stream comes and goes. */
export function onStreamStatus(fn) { statusListeners.add(fn); }

/** The records received so far (bounded): views that open late replay them. */
export const recentEvents = [];
const RECENT_MAX = 2000;

async function follow() {
  let backlog = 500, delay = 1000;
  for (;;) {
    try {
      const resp = await raw(`/internal/events?backlog=${backlog}`, {accept: "text/event-stream"});
      statusListeners.forEach(fn => fn("live"));
      delay = 1000;
      for await (const msg of sse(resp)) {
        let record;
        try { record = JSON.parse(msg.data); } catch { continue; }
        recentEvents.push(record);
        if (recentEvents.length > RECENT_MAX) recentEvents.splice(0, recentEvents.length - RECENT_MAX);
        for (const fn of subscribers) {
          try { fn(record); } catch (e) { console.warn("event subscriber failed", e); }
        }
      }
    } catch (e) {
      statusListeners.forEach(fn => fn(e instanceof ApiError && e.status === 401 ? "unauthorized" : "reconnecting"));
    }
    backlog = 0;  // what we missed while away is in the views' own polls
    await new Promise(r => setTimeout(r, delay));
    delay = Math.min(10_000, delay * 2);
  }
}
