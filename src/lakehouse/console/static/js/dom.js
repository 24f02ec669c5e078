// Building the page from API answers without ever parsing them as HTML.
//
// Every string reaches the DOM as a text node (or an attribute value set through
// the DOM), never through innerHTML: dataset names, cell values and model output
// are untrusted.

/**
 * Create an element. `attrs`: `class`, `for`, `on<event>` (a function), booleans
 * (set when true), anything else as an attribute. Children: nodes, strings (text), or arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "for") {
      el.htmlFor = value;
    } else if (name === "value") {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings as text, nested arrays) to `el`. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** SVG elements, attributes set through the DOM. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh element id with `prefix`. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A label and its control, tied by id. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = uid("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A cell value as the text a person reads. */
export function cellText(value) {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * A table of `rows` (arrays) under `columns` ({name, type?}); `caption` names it for screen readers.
 * Wrapped in a scroll box so a wide result never scrolls the page sideways.
 */
export function dataTable(columns, rows, caption) {
  const head = h(
    "tr",
    {},
    columns.map((col) =>
      h("th", { scope: "col" }, h("span", { class: "col-name" }, col.name), col.type ? h("span", { class: "col-type" }, col.type) : null),
    ),
  );
  const body = rows.map((row) =>
    h(
      "tr",
      {},
      row.map((value) => h("td", { class: value === null ? "null" : typeof value === "number" ? "num" : null }, cellText(value))),
    ),
  );
  const table = h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, head), h("tbody", {}, body));
  return h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption || "Table" }, table);
}

/** The text of an error, as the API words it, with any column diff or detail the API added. */
export function errorText(error) {
  if (!error) return "";
  const parts = [error.message || String(error)];
  const detail = error.detail || {};
  for (const key of ["added", "removed", "changed"]) {
    const value = detail[key];
    if (Array.isArray(value) && value.length) {
      parts.push(`${key}: ${value.map(columnText).join(", ")}`);
    }
  }
  if (detail.line !== undefined) parts.push(`line ${detail.line}`);
  return parts.join(" — ");
}

function columnText(col) {
  if (!col || typeof col !== "object") return String(col);
  if ("from" in col && "to" in col) return `${col.name} (${col.from} → ${col.to})`;
  if ("type" in col) return `${col.name} (${col.type})`;
  return cellText(col);
}

/** Show `error` in `el` (a role=alert element); clears it when `error` is empty. */
export function showError(el, error) {
  el.textContent = errorText(error);
  el.hidden = !error;
}

/** A date-time as local text. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** Trigger a download of `blob` as `filename`. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
