// A chart of a SQL result, drawn as SVG: bar, line or scatter, chosen from the column types.

import { cellText, s } from "./dom.js";

const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC)\b/i;
const TEMPORAL = /^(DATE|TIME|TIMESTAMP)/i;
const W = 640;
const H = 320;
const PAD = { left: 56, right: 16, top: 16, bottom: 48 };
const MAX_MARKS = 500;

export const KINDS = ["bar", "line", "scatter"];

export const isNumeric = (type) => NUMERIC.test(type || "");
const isTemporal = (type) => TEMPORAL.test(type || "");

/**
 * Which columns to plot and how: `{kind, x, y}` (column indexes; x -1 means the row number),
 * or null when no column holds numbers. A date or time x gives a line, a text x bars,
 * two numbers a scatter.
 */
export function suggest(columns) {
  const numeric = columns.map((c, i) => (isNumeric(c.type) ? i : -1)).filter((i) => i >= 0);
  if (!numeric.length) return null;
  const temporal = columns.findIndex((c) => isTemporal(c.type));
  if (temporal >= 0) return { kind: "line", x: temporal, y: numeric[0] };
  const label = columns.findIndex((c) => !isNumeric(c.type));
  if (label >= 0) return { kind: "bar", x: label, y: numeric[0] };
  if (numeric.length >= 2) return { kind: "scatter", x: numeric[0], y: numeric[1] };
  return { kind: "bar", x: -1, y: numeric[0] };
}

function ticks(min, max, count = 5) {
  if (min === max) return [min];
  const step = (max - min) / (count - 1);
  return Array.from({ length: count }, (_, i) => min + step * i);
}

function short(value) {
  if (typeof value === "number") {
    const abs = Math.abs(value);
    if (abs >= 1e6 || (abs > 0 && abs < 1e-2)) return value.toExponential(1);
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }
  const text = cellText(value);
  return text.length > 12 ? `${text.slice(0, 11)}…` : text;
}

/** The SVG chart of `rows` for `plan` ({kind, x, y}); marks carry a <title> naming their point. */
export function draw(columns, rows, plan) {
  const { kind, x, y } = plan;
  const points = [];
  for (const [i, row] of rows.slice(0, MAX_MARKS).entries()) {
    const yv = Number(row[y]);
    if (row[y] === null || !Number.isFinite(yv)) continue;
    const xr = x < 0 ? i + 1 : row[x];
    points.push({ xr, xv: toX(xr, columns[x]?.type), y: yv });
  }
  const xName = x < 0 ? "row" : columns[x].name;
  const yName = columns[y].name;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    class: "chart",
    "aria-label": `${kind[0].toUpperCase()}${kind.slice(1)} chart of ${yName} by ${xName}`,
    preserveAspectRatio: "xMidYMid meet",
  });
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const ys = points.map((p) => p.y);
  const yMin = Math.min(0, ...ys);
  const yMax = Math.max(0, ...ys);
  const sy = (v) => PAD.top + plotH - ((v - yMin) / (yMax - yMin || 1)) * plotH;
  svg.append(
    s("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH, class: "axis" }),
    s("line", { x1: PAD.left, y1: sy(0), x2: PAD.left + plotW, y2: sy(0), class: "axis" }),
  );
  for (const t of ticks(yMin, yMax)) {
    svg.append(s("text", { x: PAD.left - 6, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, short(t)));
  }
  svg.append(
    s("text", { x: PAD.left + plotW / 2, y: H - 6, class: "label", "text-anchor": "middle" }, xName),
    s("text", { x: 12, y: PAD.top + plotH / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 12 ${PAD.top + plotH / 2})` }, yName),
  );
  const marks = s("g", { class: `marks ${kind}` });
  svg.append(marks);
  if (!points.length) return svg;
  const title = (p) => s("title", {}, `${xName}: ${cellText(p.xr)}, ${yName}: ${p.y}`);
  if (kind === "bar") {
    const band = plotW / points.length;
    points.forEach((p, i) => {
      const top = sy(Math.max(0, p.y));
      const height = Math.max(1, Math.abs(sy(p.y) - sy(0)));
      marks.append(s("rect", { x: PAD.left + i * band + band * 0.1, y: top, width: Math.max(1, band * 0.8), height, class: "mark" }, title(p)));
      if (points.length <= 24) {
        svg.append(s("text", { x: PAD.left + i * band + band / 2, y: PAD.top + plotH + 16, class: "tick", "text-anchor": "middle" }, short(p.xr)));
      }
    });
    return svg;
  }
  const numericX = points.every((p) => Number.isFinite(p.xv));
  const xs = numericX ? points.map((p) => p.xv) : points.map((_, i) => i);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const sx = (v) => PAD.left + ((v - xMin) / (xMax - xMin || 1)) * plotW;
  for (const t of numericX ? ticks(xMin, xMax) : []) {
    const label = isTemporal(columns[x]?.type) ? new Date(t).toISOString().slice(0, 10) : short(t);
    svg.append(s("text", { x: sx(t), y: PAD.top + plotH + 16, class: "tick", "text-anchor": "middle" }, label));
  }
  const placed = points.map((p, i) => ({ ...p, px: sx(xs[i]), py: sy(p.y) }));
  if (!numericX && placed.length <= 24) {
    for (const p of placed) svg.append(s("text", { x: p.px, y: PAD.top + plotH + 16, class: "tick", "text-anchor": "middle" }, short(p.xr)));
  }
  if (kind === "line") {
    placed.sort((a, b) => a.px - b.px);
    const d = placed.map((p, i) => `${i ? "L" : "M"}${p.px.toFixed(1)},${p.py.toFixed(1)}`).join(" ");
    marks.append(s("path", { d, class: "line" }));
  }
  for (const p of placed) {
    marks.append(s("circle", { cx: p.px.toFixed(1), cy: p.py.toFixed(1), r: kind === "line" ? 3 : 4, class: "mark" }, title(p)));
  }
  return svg;
}

function toX(value, type) {
  if (value === null || value === undefined) return NaN;
  if (isTemporal(type)) return new Date(String(value)).getTime();
  return Number(value);
}
