// SQL: the editor (Ctrl+Enter runs, recent queries kept), a paged result table with column
// types, DuckDB's error inline, a chart of the result, CSV download and a version picker.
//
// Parquet download is left out: POST /v1/sql answers JSON or an Arrow IPC stream, not Parquet.

import { get, post, seg } from "./api.js";
import { draw, KINDS, suggest } from "./chart.js";
import { cellText, dataTable, download, field, h, showError } from "./dom.js";
import { viewName } from "./datasets.js";

const HISTORY_KEY = "lakehouse.sql.history";
const HISTORY_MAX = 20;
export const PAGE = 100;
// Statements that can be wrapped as a subquery to fetch a later page.
const PAGEABLE = /^\s*(\(|select\b|with\b|values\b|from\b|table\b)/i;

function history() {
  try {
    const kept = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(kept) ? kept.filter((q) => typeof q === "string") : [];
  } catch {
    return [];
  }
}

function remember(query) {
  const kept = [query, ...history().filter((q) => q !== query)].slice(0, HISTORY_MAX);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(kept));
}

/** `sql` with the bare identifier `name` (outside quotes and strings) replaced by `"name@N"`. */
export function pinVersion(sql, name, version) {
  const pinned = viewName(name, version);
  const pattern = new RegExp(`("(?:[^"]|"")*"|'(?:[^']|'')*')|(?<![\\w.@$])${name}(?![\\w@$])`, "gi");
  return sql.replace(pattern, (match, quoted) => (quoted ? quoted.replace(new RegExp(`^"${name}(@\\d+)?"$`, "i"), pinned) : pinned));
}

/** The rows of `result` as CSV (RFC 4180, header first). */
export function toCsv(columns, rows) {
  const quote = (value) => {
    if (value === null || value === undefined) return "";
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [columns.map((c) => quote(c.name)), ...rows.map((r) => r.map(quote))].map((r) => r.join(",")).join("\r\n") + "\r\n";
}

function pageQuery(sql, page) {
  const body = sql.trim().replace(/;\s*$/, "");
  return `SELECT * FROM (${body}\n) AS lakehouse_page LIMIT ${PAGE + 1} OFFSET ${page * PAGE}`;
}

export function render(main) {
  main.append(h("h1", {}, "SQL"));
  const editor = h("textarea", { rows: "6", spellcheck: "false", class: "code", autocapitalize: "off" });
  editor.value = history()[0] || "SELECT 42 AS answer";
  const run = h("button", { type: "button", class: "primary" }, "Run");
  const recent = h("select", {});
  const datasetPick = h("select", {}, h("option", { value: "" }, "(dataset)"));
  const versionPick = h("select", {}, h("option", { value: "" }, "(version)"));
  const useVersion = h("button", { type: "button" }, "Use version");
  const state = h("p", { role: "status", class: "state" });
  const errorEl = h("p", { class: "error", role: "alert", hidden: true });
  const output = h("div", { class: "result" });

  function fillRecent() {
    recent.replaceChildren(h("option", { value: "" }, "(recent queries)"), ...history().map((q) => h("option", { value: q }, q.length > 80 ? `${q.slice(0, 79)}…` : q)));
  }
  fillRecent();
  recent.addEventListener("change", () => {
    if (recent.value) editor.value = recent.value;
    editor.focus();
  });

  main.append(
    h(
      "section",
      { class: "panel", "aria-label": "Query" },
      field("SQL", editor, "Every dataset is a view by its name; version N is \"name@N\". Ctrl+Enter runs."),
      h("div", { class: "row" }, run, field("Recent queries", recent)),
      h(
        "fieldset",
        { class: "row" },
        h("legend", {}, "Time travel: pin a dataset to a version"),
        field("Dataset", datasetPick),
        field("Version", versionPick),
        useVersion,
      ),
    ),
    state,
    errorEl,
    output,
  );

  get("/v1/catalog/datasets?limit=1000")
    .then((answer) => {
      for (const d of answer.datasets || []) datasetPick.append(h("option", { value: d.name }, d.name));
    })
    .catch(() => {});
  datasetPick.addEventListener("change", async () => {
    versionPick.replaceChildren(h("option", { value: "" }, "(version)"));
    if (!datasetPick.value) return;
    try {
      const answer = await get(`/v1/catalog/datasets/${seg(datasetPick.value)}/versions?limit=1000`);
      for (const v of [...answer.versions].sort((a, b) => b.version - a.version)) {
        versionPick.append(h("option", { value: String(v.version) }, `${v.version} (${v.row_count} rows)`));
      }
    } catch (error) {
      showError(errorEl, error);
    }
  });
  useVersion.addEventListener("click", () => {
    if (!datasetPick.value || !versionPick.value) return;
    editor.value = pinVersion(editor.value, datasetPick.value, versionPick.value);
    editor.focus();
  });

  let current = null; // {sql, page}

  async function execute(sql, page) {
    showError(errorEl, null);
    state.textContent = "Running…";
    run.disabled = true;
    try {
      const query = page === 0 ? sql : pageQuery(sql, page);
      const result = await post("/v1/sql", { sql: query, max_rows: page === 0 ? PAGE : PAGE + 1 });
      const more = page === 0 ? result.truncated : result.rows.length > PAGE;
      const rows = result.rows.slice(0, PAGE);
      current = { sql, page };
      const first = page * PAGE + 1;
      state.textContent = rows.length
        ? `Rows ${first} to ${first + rows.length - 1}${more ? " (more follow)" : ""} · ${Math.round(result.elapsed_ms)} ms`
        : `No rows · ${Math.round(result.elapsed_ms)} ms`;
      showResult(output, sql, page, result.columns, rows, more && PAGEABLE.test(sql), (p) => execute(sql, p));
    } catch (error) {
      state.textContent = "";
      if (error.name === "AbortError") return;
      showError(errorEl, error);
      output.replaceChildren();
    } finally {
      run.disabled = false;
    }
  }

  function start() {
    const sql = editor.value.trim();
    if (!sql) return;
    remember(sql);
    fillRecent();
    execute(sql, 0);
  }
  run.addEventListener("click", start);
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      start();
    }
  });
  return () => {
    current = null;
  };
}

function showResult(output, sql, page, columns, rows, more, goto) {
  const pager = h(
    "div",
    { class: "row pager" },
    h("button", { type: "button", disabled: page === 0, onclick: () => goto(page - 1) }, "Previous page"),
    h("span", {}, `Page ${page + 1}`),
    h("button", { type: "button", disabled: !more, onclick: () => goto(page + 1) }, "Next page"),
  );
  const csv = h("button", { type: "button" }, "Download CSV");
  const csvState = h("span", { role: "status", class: "hint" });
  csv.addEventListener("click", async () => {
    csvState.textContent = "Preparing…";
    try {
      // The whole result up to the server's row cap, not just this page.
      const full = await post("/v1/sql", { sql });
      download(new Blob([toCsv(full.columns, full.rows)], { type: "text/csv" }), "result.csv");
      csvState.textContent = full.truncated ? `First ${full.rows.length} rows (the server's cap).` : `${full.rows.length} rows.`;
    } catch (error) {
      csvState.textContent = error.message;
    }
  });
  output.replaceChildren(
    h("div", { class: "row" }, csv, csvState),
    dataTable(columns, rows, "Query result"),
    pager,
    chartPanel(columns, rows),
  );
}

function chartPanel(columns, rows) {
  const plan = suggest(columns);
  const panel = h("section", { class: "panel", "aria-labelledby": "chart-title" }, h("h2", { id: "chart-title" }, "Chart"));
  if (!plan || !rows.length) {
    panel.append(h("p", { class: "hint" }, "Nothing to chart: the result has no numeric column."));
    return panel;
  }
  const kind = h("select", {}, KINDS.map((k) => h("option", { value: k, selected: k === plan.kind }, k)));
  const holder = h("div", { class: "chart-box" });
  const paint = () => holder.replaceChildren(draw(columns, rows, { ...plan, kind: kind.value }));
  kind.addEventListener("change", paint);
  panel.append(field("Chart type", kind), holder);
  paint();
  const x = plan.x < 0 ? "row number" : columns[plan.x].name;
  panel.append(h("p", { class: "hint" }, `${cellText(columns[plan.y].name)} by ${x}`));
  return panel;
}
