// Search: an index, a query, a mode (vector / keyword / hybrid), JSON filters; hits with scores.

import { ApiError, get, post, seg } from "./api.js";
import { cellText, field, h, showError } from "./dom.js";

export function render(main) {
  main.append(h("h1", {}, "Search"));
  const index = h("select", {});
  const query = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  const mode = h(
    "select",
    {},
    h("option", { value: "vector" }, "vector"),
    h("option", { value: "keyword" }, "keyword"),
    h("option", { value: "hybrid" }, "hybrid"),
  );
  const filters = h("textarea", { rows: "2", class: "code", spellcheck: "false", placeholder: '{"city": "Oslo", "rate": {"$lt": 25}}' });
  const k = h("input", { type: "number", min: "1", max: "1000", value: "10", inputmode: "numeric" });
  const go = h("button", { type: "submit", class: "primary" }, "Search");
  const state = h("p", { role: "status", class: "state" });
  const errorEl = h("p", { class: "error", role: "alert", hidden: true });
  const hits = h("ol", { class: "hits", "aria-label": "Hits" });
  const form = h(
    "form",
    { class: "panel" },
    h("div", { class: "row" }, field("Index", index), field("Mode", mode), field("Results", k)),
    field("Query", query),
    field("Filters", filters, "Optional JSON: metadata fields and values, or operators like $lt, $in, $or."),
    go,
  );
  main.append(form, state, errorEl, hits);

  get("/v1/vectors/index")
    .then((answer) => {
      const list = answer.indexes || [];
      if (!list.length) {
        index.append(h("option", { value: "" }, "(no indexes yet)"));
        return;
      }
      for (const info of list) {
        index.append(h("option", { value: info.name }, `${info.name} (${info.count} items${info.model ? `, ${info.model}` : ""})`));
      }
    })
    .catch((error) => showError(errorEl, error));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errorEl, null);
    if (!index.value || !query.value.trim()) {
      showError(errorEl, new ApiError(400, "invalid_request", index.value ? "Type a query first." : "Pick an index first."));
      return;
    }
    const body = { text: query.value, k: Number(k.value) || 10 };
    if (mode.value !== "vector") body.mode = mode.value; // vector is the default: servers before modes take it too
    if (filters.value.trim()) {
      try {
        body.filter = JSON.parse(filters.value);
      } catch (exc) {
        showError(errorEl, new ApiError(400, "invalid_request", `Filters are not JSON: ${exc.message}`));
        return;
      }
      if (!body.filter || typeof body.filter !== "object" || Array.isArray(body.filter)) {
        showError(errorEl, new ApiError(400, "invalid_request", "Filters must be a JSON object."));
        return;
      }
    }
    state.textContent = "Searching…";
    go.disabled = true;
    try {
      const answer = await post(`/v1/vectors/index/${seg(index.value)}/search`, body);
      const found = answer.hits || [];
      state.textContent = `${found.length} hit${found.length === 1 ? "" : "s"}`;
      hits.replaceChildren(...found.map(hit));
    } catch (error) {
      state.textContent = "";
      hits.replaceChildren();
      showError(errorEl, error);
    } finally {
      go.disabled = false;
    }
  });
}

function hit(item) {
  const meta = Object.entries(item.metadata || {});
  return h(
    "li",
    { class: "hit" },
    h("div", { class: "row" }, h("strong", { class: "mono" }, item.id), h("span", { class: "score" }, `score ${Number(item.score).toFixed(4)}`)),
    item.text ? h("p", { class: "text" }, item.text) : null,
    meta.length ? h("dl", { class: "meta" }, meta.map(([key, value]) => [h("dt", {}, key), h("dd", {}, cellText(value))])) : null,
  );
}
