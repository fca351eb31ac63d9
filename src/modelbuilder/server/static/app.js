/* Shared by every page: JSON calls to the API, small DOM helpers, sortable tables and an SVG line chart.
   Text from the server only ever reaches the page through textContent, never as HTML. */
"use strict";

const MB = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Accept: "application/json", "X-Requested-With": "modelbuilder-portal" },
      options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
    let body = null;
    if ((response.headers.get("content-type") || "").includes("application/json")) body = await response.json();
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(value, digits = 4) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "-";
  }

  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "-";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
  }

  function nice(lo, hi) {
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    const span = hi - lo;
    return [lo >= 0 ? Math.max(0, lo - span * 0.05) : lo - span * 0.05, hi + span * 0.05];
  }

  /* The values the y axis is scaled to: with `clipFirst`, the first epoch's points do not set the top when
     they are more than twice the largest later value (a first epoch's loss of 33.9 against about 1 after it
     would flatten every later epoch); such points are drawn on the top edge, marked "clipped", with their
     value in their title. */
  function scaled(all, clipFirst) {
    const later = all.filter((p) => p[0] > 1).map((p) => p[1]);
    if (!clipFirst || !later.length) return { values: all.map((p) => p[1]), top: Infinity };
    const top = Math.max(...later);
    const first = all.filter((p) => p[0] <= 1).map((p) => p[1]);
    if (!first.length || Math.max(...first) <= 2 * Math.abs(top)) return { values: all.map((p) => p[1]), top: Infinity };
    return { values: all.filter((p) => p[0] > 1 || p[1] <= 2 * Math.abs(top)).map((p) => p[1]), top };
  }

  /* series: [{name, cls, points: [[epoch, value], ...]}]; every point is a <circle class="point cls">. */
  function lineChart(root, series, options = {}) {
    const rows = Math.ceil(series.length / 3);
    const W = 460, L = 48, R = 12, T = 12, B = 26 + 16 * Math.max(1, rows), H = 190 + B;
    root.setAttribute("viewBox", `0 0 ${W} ${H}`);
    root.replaceChildren();
    const all = series.flatMap((s) => s.points.filter((p) => typeof p[1] === "number"));
    const maxX = Math.max(2, ...all.map((p) => p[0]), options.epochs || 0);
    const { values, top } = scaled(all, options.clipFirst);
    let [y0, y1] = options.range || nice(Math.min(...values), Math.max(...values));
    if (!all.length && !options.range) [y0, y1] = [0, 1];
    const x = (v) => L + ((v - 1) / (maxX - 1)) * (W - L - R);
    const y = (v) => T + (1 - (Math.min(v, y1) - y0) / (y1 - y0)) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4;
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, v.toFixed(2)));
    }
    const step = Math.max(1, Math.ceil(maxX / 10));
    for (let e = 1; e <= maxX; e += step) {
      root.append(svg("text", { x: x(e), y: H - B + 16, class: "tick", "text-anchor": "middle" }, String(e)));
    }
    root.append(svg("text", { x: L - 6, y: H - B + 16, class: "axis-label", "text-anchor": "end" }, "epoch"));
    if (!all.length) {
      root.append(svg("text", { x: (L + W - R) / 2, y: H / 2, class: "empty-chart", "text-anchor": "middle" },
        options.empty || "no epoch finished yet"));
    }
    series.forEach((s, index) => {
      const pts = s.points.filter((p) => typeof p[1] === "number");
      const cls = s.cls || `series-${index}`;
      if (pts.length > 1) {
        root.append(svg("polyline", { points: pts.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), class: `line ${cls}` }));
      }
      for (const [epoch, value] of pts) {
        const clipped = value > top && value > y1;
        const dot = svg("circle", { cx: x(epoch), cy: y(value), r: 3.5, class: `point ${cls}${clipped ? " clipped" : ""}`,
          "data-epoch": epoch });
        dot.append(svg("title", {}, `${s.name}, epoch ${epoch}: ${value.toFixed(4)}${clipped ? " (off the scale)" : ""}`));
        root.append(dot);
      }
      const lx = L + (index % 3) * 136, ly = H - B + 30 + 16 * Math.floor(index / 3);
      root.append(svg("rect", { x: lx, y: ly - 5, width: 10, height: 4, class: `swatch ${cls}` }));
      root.append(svg("text", { x: lx + 14, y: ly, class: "legend" }, s.name));
    });
  }

  function sortable(table) {
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach((th, column) => {
      if (!th.hasAttribute("data-sort")) return;
      th.tabIndex = 0;
      th.classList.add("sort-header");
      const sort = () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach((other) => other.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const numeric = th.dataset.sort === "number";
        const key = (row) => {
          const cell = row.cells[column];
          const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
          return numeric ? parseFloat(raw) : raw.toLowerCase();
        };
        const rows = Array.from(table.tBodies[0].rows);
        rows.sort((a, b) => {
          const ka = key(a), kb = key(b);
          const order = ka < kb ? -1 : ka > kb ? 1 : 0;
          return ascending ? order : -order;
        });
        table.tBodies[0].append(...rows);
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("table.sortable").forEach(sortable);
  });

  return { api, el, svg, fmt, duration, lineChart, ApiError };
})();
