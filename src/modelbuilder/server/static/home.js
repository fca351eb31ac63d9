/* The home page: the active runs' status and progress move without a reload (the API, every 2 s). */
"use strict";

(() => {
  const rows = [...document.querySelectorAll("tr.active-run")];
  if (!rows.length) return;

  function progressText(run) {
    const p = run.progress || {};
    if (run.terminal) return run.status_reason;
    if (!p.epochs) return run.status_reason;
    const parts = [`epoch ${p.epoch}/${p.epochs}`];
    if (p.steps) parts.push(`step ${p.step}/${p.steps}`);
    if (typeof p.accuracy === "number") parts.push(`accuracy ${MB.fmt(p.accuracy, 3)}`);
    if (typeof p.eta_s === "number") parts.push(`ETA ${MB.duration(p.eta_s)}`);
    return parts.join(", ");
  }

  async function refresh() {
    await Promise.all(rows.map(async (row) => {
      if (row.dataset.ended) return;
      try {
        const run = await MB.api(`/api/v1/runs/${encodeURIComponent(row.dataset.runId)}`);
        const status = row.querySelector(".run-status");
        status.textContent = run.status;
        status.className = `status status-${run.status.toLowerCase()} run-status`;
        row.querySelector(".run-progress").textContent = progressText(run);
        if (run.terminal) row.dataset.ended = "1";
      } catch (error) { /* the next refresh tries again */ }
    }));
  }
  setInterval(refresh, 2000);
})();
