// A sweep's page: its leaderboard (templates/_leaderboard.html) kept live. While the sweep runs, its trials
// are fetched again from the JSON API every few seconds and the table is rebuilt (text only, no markup from
// data). The chart of the best accuracy so far is drawn by the server, as of the page's load.
(() => {
  "use strict";
  const POLL_MS = 3000;
  const page = document.getElementById("run-page");
  const table = document.getElementById("leaderboard-table");
  if (!page || !table) return;
  const api = page.dataset.api;
  const workspacePath = page.dataset.page.split("/runs/")[0];

  const shown = (value) => (typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : String(value));
  const duration = (seconds) => {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(x)}` : `${m}:${two(x)}`;
  };
  const cell = (row, text) => { const td = row.insertCell(); td.textContent = text; return td; };

  function render(trials) {
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const trial of trials) {
      const row = body.insertRow();
      row.dataset.trial = String(trial.number);
      if (trial.best) row.className = "best";
      const first = row.insertCell();
      const link = document.createElement("a");
      link.href = `${workspacePath}/runs/${trial.run_id}`;
      link.textContent = String(trial.number);
      first.append(link);
      if (trial.best) first.append(" ★ best");
      const settings = row.insertCell();
      Object.entries(trial.settings).forEach(([name, value], i) => {
        const code = document.createElement("code");
        code.textContent = name;
        settings.append(...(i ? [", "] : []), code, ` ${shown(value)}`);
      });
      cell(row, trial.accuracy === null ? "-" : trial.accuracy.toFixed(4));
      cell(row, `${trial.epochs ?? "-"}/${trial.planned_epochs || "-"}`);
      cell(row, duration(trial.seconds));
      const status = document.createElement("span");
      status.className = `status status-${trial.status.toLowerCase()}`;
      status.textContent = trial.status;
      row.insertCell().append(status);
      cell(row, trial.why);
    }
  }

  async function poll() {
    try {
      const [run, trials] = await Promise.all([MB.api(api), MB.api(`${api}/trials`)]);
      render(trials);
      if (run.terminal) return;
    } catch (error) {
      // the run page's own script says when the server cannot be reached
    }
    setTimeout(poll, POLL_MS);
  }

  if (page.dataset.status && !["Completed", "Failed", "Canceled"].includes(page.dataset.status)) setTimeout(poll, POLL_MS);
})();
