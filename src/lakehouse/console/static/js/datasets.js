// Datasets: the list, one dataset's schema and versions, a preview of any version, upload, delete.

import { ApiError, get, post, remove, seg, upload } from "./api.js";
import { dataTable, errorText, field, h, showError, when } from "./dom.js";

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const PREVIEW_ROWS = 50;

/** The view `"name@N"` (or `"name"`) as quoted SQL; names are checked, quotes doubled regardless. */
export function viewName(name, version) {
  const view = version === undefined ? name : `${name}@${version}`;
  return `"${view.replaceAll('"', '""')}"`;
}

export function render(main, rest) {
  const name = rest[0] || "";
  main.append(h("h1", {}, "Datasets"));
  const list = h("section", { "aria-labelledby": "datasets-list" }, h("h2", { id: "datasets-list" }, "All datasets"));
  const listBody = h("div", { class: "loading" }, "Loading…");
  const listError = h("p", { class: "error", role: "alert", hidden: true });
  list.append(listError, listBody);
  const detailBox = h("div", {});
  // After an upload the list and the dataset refresh in place, so the upload's outcome stays in view.
  const uploaded = (dataset) => {
    loadList(listBody, listError);
    const hash = `#datasets/${encodeURIComponent(dataset)}`;
    if (location.hash !== hash) history.pushState(null, "", hash);
    detailBox.replaceChildren(detail(dataset));
  };
  main.append(h("div", { class: "columns" }, list, uploader(name, uploaded)), detailBox);
  loadList(listBody, listError);
  if (name) detailBox.append(detail(name));
}

async function loadList(body, errorEl) {
  try {
    const answer = await get("/v1/catalog/datasets?limit=1000");
    showError(errorEl, null);
    const rows = answer.datasets || [];
    if (!rows.length) {
      body.replaceChildren(h("p", {}, "No datasets yet: upload a CSV, Parquet, JSON or XLSX file to make one."));
      return;
    }
    const table = h(
      "table",
      { class: "list" },
      h("caption", {}, "Datasets"),
      h("thead", {}, h("tr", {}, ["Name", "Rows", "Version", "Last update"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        rows.map((d) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#datasets/${encodeURIComponent(d.name)}` }, d.name)),
            h("td", { class: "num" }, String(d.row_count)),
            h("td", { class: "num" }, String(d.version)),
            h("td", {}, when(d.updated_at)),
          ),
        ),
      ),
    );
    body.replaceChildren(h("div", { class: "scroll" }, table));
  } catch (error) {
    body.replaceChildren();
    showError(errorEl, error);
  }
}

function uploader(current, done) {
  const nameBox = h("input", { type: "text", value: current, pattern: NAME.source, autocomplete: "off", spellcheck: "false" });
  const mode = h("select", {}, h("option", { value: "append" }, "append"), h("option", { value: "replace" }, "replace"));
  const file = h("input", { type: "file", accept: ".csv,.tsv,.txt,.parquet,.json,.ndjson,.jsonl,.xlsx" });
  const bar = h("progress", { max: "100", value: "0", "aria-label": "Upload progress", hidden: true });
  const state = h("p", { role: "status", class: "state" });
  const errorEl = h("p", { class: "error", role: "alert", hidden: true });
  const zone = h(
    "section",
    { class: "panel drop", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload a file"),
    h("p", { class: "hint" }, "CSV, TSV, Parquet, JSON, NDJSON or XLSX; pick a file or drop it here. It becomes a new version."),
    field("Dataset name", nameBox, "Lowercase letters, digits and _; a new name makes a new dataset."),
    field("Mode", mode),
    field("Upload", file),
    bar,
    state,
    errorEl,
  );

  async function send(chosen) {
    showError(errorEl, null);
    const name = nameBox.value.trim() || chosen.name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9_]/g, "_");
    if (!NAME.test(name)) {
      showError(errorEl, new ApiError(400, "invalid_name", `"${name}" is not a dataset name: use lowercase letters, digits and _, starting with a letter or _`));
      return;
    }
    nameBox.value = name;
    bar.hidden = false;
    bar.value = 0;
    bar.max = 100;
    bar.dataset.events = "0";
    file.disabled = true;
    state.textContent = `Uploading ${chosen.name}…`;
    try {
      const answer = await upload(`/v1/ingest/${seg(name)}?mode=${seg(mode.value)}`, chosen, {
        onProgress: (loaded, total) => {
          bar.value = total ? Math.round((loaded / total) * 100) : 100;
          bar.dataset.events = String(Number(bar.dataset.events || 0) + 1);
        },
        onSent: () => {
          state.textContent = `Uploaded ${chosen.name}; converting…`;
          bar.removeAttribute("value"); // indeterminate while the server converts
        },
      });
      bar.value = 100;
      state.textContent = answer.created
        ? `Version ${answer.version} of ${answer.dataset} created: ${answer.rows} rows.`
        : `Already there: these bytes are version ${answer.version} of ${answer.dataset}; no new version.`;
      done(name);
    } catch (error) {
      bar.hidden = true;
      state.textContent = "";
      showError(errorEl, error);
    } finally {
      file.disabled = false;
      file.value = "";
    }
  }

  file.addEventListener("change", () => {
    if (file.files && file.files[0]) send(file.files[0]);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const dropped = event.dataTransfer && event.dataTransfer.files[0];
    if (dropped) send(dropped);
  });
  return zone;
}

function detail(name) {
  const section = h("section", { class: "panel", "aria-labelledby": "dataset-title" }, h("h2", { id: "dataset-title" }, name));
  const errorEl = h("p", { class: "error", role: "alert", hidden: true });
  section.append(errorEl);
  if (!NAME.test(name)) {
    showError(errorEl, new ApiError(404, "not_found", `no dataset named ${JSON.stringify(name)}`));
    return section;
  }
  const schema = h("div", {});
  const versions = h("div", {});
  const preview = h("div", { class: "preview" });
  section.append(
    h("h3", {}, "Schema"),
    schema,
    h("h3", {}, "Versions"),
    versions,
    preview,
    deleter(name, errorEl),
  );
  (async () => {
    try {
      const [manifest, history] = await Promise.all([
        get(`/v1/catalog/datasets/${seg(name)}`),
        get(`/v1/catalog/datasets/${seg(name)}/versions?limit=1000`),
      ]);
      schema.replaceChildren(
        dataTable(
          [{ name: "Column" }, { name: "Type" }],
          manifest.schema.map((c) => [c.name, c.type]),
          `Schema of ${name}`,
        ),
      );
      const rows = [...(history.versions || [])].sort((a, b) => b.version - a.version);
      versions.replaceChildren(
        h(
          "div",
          { class: "scroll" },
          h(
            "table",
            {},
            h("caption", {}, `Versions of ${name}`),
            h("thead", {}, h("tr", {}, ["Version", "Rows", "Created", "Fingerprint", ""].map((t) => h("th", { scope: "col" }, t)))),
            h(
              "tbody",
              {},
              rows.map((v) =>
                h(
                  "tr",
                  {},
                  h("td", { class: "num" }, String(v.version), v.version === manifest.version ? " (current)" : ""),
                  h("td", { class: "num" }, String(v.row_count)),
                  h("td", {}, when(v.created_at)),
                  h("td", { class: "mono" }, String(v.fingerprint || "").slice(0, 12)),
                  h("td", {}, h("button", { type: "button", onclick: () => showPreview(preview, name, v.version) }, `Preview version ${v.version}`)),
                ),
              ),
            ),
          ),
        ),
      );
      showPreview(preview, name, manifest.version);
    } catch (error) {
      showError(errorEl, error);
    }
  })();
  return section;
}

async function showPreview(el, name, version) {
  const title = h("h3", { id: "preview-title" }, `Preview of ${name}@${version}`);
  el.replaceChildren(title, h("p", { class: "loading" }, "Loading…"));
  try {
    const result = await post("/v1/sql", { sql: `SELECT * FROM ${viewName(name, version)} LIMIT ${PREVIEW_ROWS}`, max_rows: PREVIEW_ROWS });
    el.replaceChildren(
      title,
      h("p", { class: "hint" }, `First ${result.rows.length} rows of version ${version}; query it in SQL as ${viewName(name, version)}.`),
      dataTable(result.columns, result.rows, `Preview of ${name} version ${version}`),
    );
  } catch (error) {
    el.replaceChildren(title, h("p", { class: "error", role: "alert" }, errorText(error)));
  }
}

function deleter(name, errorEl) {
  const box = h("div", { class: "danger" });
  const ask = h("button", { type: "button", class: "danger" }, "Delete dataset");
  const confirm = h("button", { type: "button", class: "danger" }, `Delete ${name} for good`);
  const cancel = h("button", { type: "button" }, "Cancel");
  const sure = h("p", { hidden: true }, `Every version and file of ${name} goes. `, confirm, " ", cancel);
  ask.addEventListener("click", () => {
    sure.hidden = false;
    ask.hidden = true;
    cancel.focus();
  });
  cancel.addEventListener("click", () => {
    sure.hidden = true;
    ask.hidden = false;
    ask.focus();
  });
  confirm.addEventListener("click", async () => {
    try {
      await remove(`/v1/catalog/datasets/${seg(name)}`);
      location.hash = "#datasets";
    } catch (error) {
      showError(errorEl, error);
      sure.hidden = true;
      ask.hidden = false;
    }
  });
  box.append(h("h3", {}, "Delete"), h("p", { class: "hint" }, "Needs an admin token."), ask, sure);
  return box;
}
