// The one way the console talks to the lakehouse: the public HTTP API, same origin.
//
// Mirrors lakehouse.Client: the bearer token, the contract's error body turned
// into one ApiError, server-sent events parsed in one place, and uploads with
// progress. Pages never call fetch themselves.

const TOKEN_KEY = "lakehouse.token";

/** An error answer of the API: its HTTP status, the contract's code and message, and any detail. */
export class ApiError extends Error {
  constructor(status, code, message, detail = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** The signed-in token, kept for this tab only. */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

function headers(extra = {}) {
  const out = { ...extra };
  const token = session.token;
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

function unauthorized(error) {
  window.dispatchEvent(new CustomEvent("lakehouse:unauthorized", { detail: error.message }));
}

/** The ApiError an answer's body describes (the contract's `{"error": {...}}`, else the status). */
function errorFrom(status, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const err = body && typeof body === "object" ? body.error : null;
  if (err && typeof err === "object" && typeof err.message === "string") {
    const { code, message, ...detail } = err;
    return new ApiError(status, String(code ?? `http_${status}`), message, detail);
  }
  return new ApiError(status, `http_${status}`, `the server answered ${status}`);
}

async function raise(response) {
  const error = errorFrom(response.status, await response.text());
  if (response.status === 401) unauthorized(error);
  throw error;
}

/** Send a request; the Response when it succeeded, else an ApiError thrown. */
export async function send(method, path, { json, body, signal, accept } = {}) {
  const extra = {};
  if (json !== undefined) extra["Content-Type"] = "application/json";
  if (accept) extra.Accept = accept;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(extra),
      body: json !== undefined ? JSON.stringify(json) : body,
      signal,
      cache: "no-store",
    });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", "the lakehouse could not be reached");
  }
  if (!response.ok) await raise(response);
  return response;
}

/** GET `path` as JSON. */
export async function get(path, options = {}) {
  return (await send("GET", path, options)).json();
}

/** POST `value` as JSON to `path`; the JSON answer. */
export async function post(path, value, options = {}) {
  return (await send("POST", path, { ...options, json: value })).json();
}

/** DELETE `path`. */
export async function remove(path) {
  await send("DELETE", path);
}

/** `encodeURIComponent` for one path segment. */
export const seg = encodeURIComponent;

/**
 * POST `value` and read the answer as server-sent events: yields `{event, data}` with `data`
 * parsed as JSON where it is JSON. A JSON (non-stream) answer is yielded once as event "json".
 */
export async function* events(path, value, signal) {
  const response = await send("POST", path, { json: value, signal, accept: "text/event-stream" });
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("text/event-stream")) {
    yield { event: "json", data: await response.json() };
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value: chunk, done } = await reader.read();
    if (done) break;
    buffer += chunk.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const parsed = parseEvent(block);
      if (parsed) yield parsed;
    }
  }
  const last = parseEvent(buffer);
  if (last) yield last;
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":") || line === "") continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = text;
    else if (field === "data") data.push(text);
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  try {
    return { event, data: JSON.parse(raw), raw };
  } catch {
    return { event, data: raw, raw };
  }
}

/**
 * Upload `file` as a multipart form (field `file`) with XMLHttpRequest, for its upload progress.
 * `onProgress(loaded, total)` follows the bytes sent; `onSent()` fires once they are all sent
 * (the server is then converting). Resolves with the JSON answer; rejects with an ApiError.
 */
export function upload(path, file, { onProgress, onSent } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded, event.total);
    });
    xhr.upload.addEventListener("load", () => onSent && onSent());
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, "invalid_answer", "the server's answer was not JSON"));
        }
        return;
      }
      const error = errorFrom(xhr.status, xhr.responseText);
      if (xhr.status === 401) unauthorized(error);
      reject(error);
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload did not reach the lakehouse")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "the upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}
