// Status: the gateway's health and version, and whether each service answers through it.
//
// Services have no health route behind the gateway (each one's /health is on its own port in
// split mode), so each is probed with its cheapest read; a gateway 503 `unavailable` means the
// service is down. The doctor has no HTTP route: it runs on the server (`lakehouse doctor`).

import { ApiError, get, post, send } from "./api.js";
import { h } from "./dom.js";

const PROBES = [
  ["storaged", () => get("/v1/storage/objects?limit=1")],
  ["catalogd", () => get("/v1/catalog/datasets?limit=1")],
  ["ingestd", () => send("POST", "/v1/ingest/-", { body: "" })],
  ["queryd", () => post("/v1/sql", { sql: "SELECT 1" })],
  ["vectord", () => get("/v1/vectors/index")],
  ["embedd", () => post("/v1/embed", { texts: [] })],
  ["chatd", () => get("/v1/chat/providers")],
];
const DOWN = new Set(["unavailable", "upstream_timeout", "upstream_error", "network"]);

async function probe(check) {
  try {
    await check();
    return ["up", "answers"];
  } catch (error) {
    if (!(error instanceof ApiError)) return ["down", String(error)];
    if (DOWN.has(error.code)) return ["down", error.message];
    if (error.status === 401 || error.status === 403) return ["unknown", `not checked: ${error.message}`];
    // Its own refusal of the probe (400 for an empty embed, a bad dataset name): it answered.
    return ["up", "answers"];
  }
}

export function render(main) {
  main.append(h("h1", {}, "Status"));
  const gateway = h("p", { role: "status" }, "Checking the gateway…");
  const body = h("tbody", {});
  main.append(
    h("section", { class: "panel", "aria-labelledby": "gw" }, h("h2", { id: "gw" }, "Gateway"), gateway),
    h(
      "section",
      { class: "panel", "aria-labelledby": "svc" },
      h("h2", { id: "svc" }, "Services"),
      h("div", { class: "scroll" }, h("table", {}, h("caption", {}, "Services"), h("thead", {}, h("tr", {}, ["Service", "Status", "Detail"].map((t) => h("th", { scope: "col" }, t)))), body)),
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "doc" },
      h("h2", { id: "doc" }, "Doctor"),
      h("p", {}, "The doctor's checks (Python, storage, ports, providers, keys) run on the server: ", h("code", {}, "lakehouse doctor"), ". No HTTP route offers its summary."),
    ),
  );
  get("/health")
    .then((health) => {
      gateway.textContent = `${health.service} ${health.status}, version ${health.version}`;
    })
    .catch((error) => {
      gateway.textContent = `The gateway does not answer: ${error.message}`;
    });
  for (const [name, check] of PROBES) {
    const state = h("td", {}, "…");
    const detail = h("td", {});
    body.append(h("tr", { "data-service": name }, h("th", { scope: "row" }, name), state, detail));
    probe(check).then(([word, text]) => {
      state.textContent = word;
      state.className = `state-${word}`;
      detail.textContent = text;
    });
  }
}
