/* The run page, kept live. It listens to the run's event stream (GET .../events: a snapshot of the run,
   its status history, metrics and log, then each change as the server sees it; one poller in the server
   serves every open page) and updates the page in place, without a reload. If the stream cannot be
   used (the server refuses it, it fails again and again before delivering anything, or nothing arrives
   through a buffering proxy) it polls the JSON API instead. When the run ends it shows the evaluation,
   the downloads and the "try the model" box. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("run-page");
  if (!root) return;
  const api = root.dataset.api;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;  // the fallback's pace
  const SNAPSHOT_MS = 10000;  // a stream that has delivered no snapshot by then is given up for polling
  const STREAM_FAILURES = 3;  // errors in a row, with no event between them, before falling back
  let logSeq = 0, historyShown = -1, metricsShown = null, dataReportShown = false, finished = false, epochs = 0;
  let history = [], lastRun = null;
  const metrics = new Map();  // "key:step" -> point

  function showStatus(run) {
    const status = $("run-status");
    status.textContent = run.status;
    status.className = `status status-${run.status.toLowerCase()}`;
    root.dataset.status = run.status;
    $("run-reason").textContent = run.status_reason;
    $("run-duration").textContent = MB.duration(run.duration_s);
    $("run-cost").textContent = run.cost.toFixed(4);
    $("cancel-run").hidden = run.terminal || run.cancel_requested;
    const error = $("run-error");
    error.hidden = !run.error;
    error.textContent = run.error || "";
  }

  function showProgress(run) {
    const p = run.progress || {};
    epochs = p.epochs || epochs;
    $("progress-phase").textContent = p.phase || (run.terminal ? "done" : "-");
    $("progress-epoch").textContent = p.epochs ? `${p.epoch} / ${p.epochs}` : "-";
    $("progress-step").textContent = p.steps ? `${p.step} / ${p.steps}` : "-";
    $("progress-eta").textContent = run.terminal ? "-" : MB.duration(p.eta_s);
    $("progress-speed").textContent = MB.fmt(p.images_per_s, 1);
    $("progress-loss").textContent = MB.fmt(p.loss, 4);
    let done = 0;
    if (run.status === "Completed") done = 1;
    else if (p.epochs && p.steps) done = ((p.epoch - 1) + p.step / p.steps) / p.epochs;
    $("progress-bar").style.width = `${Math.max(0, Math.min(1, done)) * 100}%`;
  }

  function showHistory(history) {
    if (history.length === historyShown) return;
    historyShown = history.length;
    $("status-history").tBodies[0].replaceChildren(...history.map((change) => MB.el("tr", {},
      MB.el("td", { text: new Date(change.at).toISOString().replace("T", " ").slice(0, 19) + " UTC" }),
      MB.el("td", {}, MB.el("span", { class: `status status-${change.status.toLowerCase()}`, text: change.status })),
      MB.el("td", { text: change.reason }))));
  }

  function showMetrics(points) {
    const stamp = points.map((p) => `${p.key}:${p.step}:${p.value}`).join("|");
    if (stamp === metricsShown) return;
    metricsShown = stamp;
    const series = (key) => points.filter((p) => p.key === key).map((p) => [p.step, p.value]);
    MB.lineChart($("chart-loss"), [
      { name: "training", cls: "series-train", points: series("train_loss") },
      { name: "validation", cls: "series-val", points: series("val_loss") },
    ], { epochs, clipFirst: true });
    MB.lineChart($("chart-accuracy"), [
      { name: "training", cls: "series-train", points: series("train_accuracy") },
      { name: "validation", cls: "series-val", points: series("val_accuracy") },
    ], { range: [0, 1], epochs });
  }

  function showLogs(lines) {
    lines = lines.filter((line) => line.seq > logSeq);
    if (!lines.length) return;
    const pre = $("log-tail");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    const text = lines.map((line) => {
      const at = new Date(line.at).toISOString().slice(11, 19);
      return `${at} ${line.level.padEnd(7)} ${line.message}\n`;
    }).join("");
    pre.append(document.createTextNode(text));
    logSeq = lines[lines.length - 1].seq;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function addMetrics(points) {
    for (const point of points) metrics.set(`${point.key}:${point.step}`, point);
    showMetrics([...metrics.values()].sort((a, b) => a.key.localeCompare(b.key) || a.step - b.step));
  }

  async function artifact(path) {
    try {
      return await MB.api(`${api}/artifacts/${path}`);
    } catch (error) {
      if (error instanceof MB.ApiError && error.status === 404) return null;
      throw error;
    }
  }

  async function showDataReport() {
    const report = await artifact("data_report.json");
    if (!report) return;
    dataReportShown = true;
    $("data-report-empty").hidden = true;
    $("data-report-body").hidden = false;
    $("data-summary").textContent = `${report.train_images} training and ${report.validation_images} validation ` +
      `images in ${report.labels.length} labels, at ${report.image_size} px; validation: ${report.validation_source}.`;
    $("data-per-label").tBodies[0].replaceChildren(...report.labels.map((label) => MB.el("tr", {},
      MB.el("td", { text: label }),
      MB.el("td", { text: String((report.train_per_label || {})[label] || 0) }),
      MB.el("td", { text: String((report.validation_per_label || {})[label] || 0) }))));
    $("data-findings").replaceChildren(...(report.summary || []).map((line) => MB.el("li",
      { class: line.level, "data-topic": line.topic }, line.fix ? `${line.text} Fix: ${line.fix}` : line.text)));
    $("data-suspects-link").hidden = !(report.suspects && report.suspects.count > 0);
    const serious = ((report.duplicates || {}).pairs || []).filter((p) => p.across_labels || p.across_split);
    $("data-duplicates").hidden = serious.length === 0;
    $("data-duplicates").tBodies[0].replaceChildren(...serious.slice(0, 50).map((p) => MB.el("tr", {},
      MB.el("td", { text: p.images.map((i) => `${i.split}: ${i.path}`).join("  ↔  ") }),
      MB.el("td", { text: [p.across_labels ? "filed under two labels" : "", p.across_split ? "on both sides of " +
        "the split (a leak)" : ""].filter(Boolean).join("; ") + ` (${p.kind})` }))));
    const skipped = report.skipped || [];
    $("data-skipped-none").hidden = skipped.length > 0;
    $("data-skipped").hidden = skipped.length === 0;
    $("data-skipped").tBodies[0].replaceChildren(...skipped.map((s) => MB.el("tr", {},
      MB.el("td", { text: s.path }), MB.el("td", { text: s.reason }))));
  }

  async function showEvaluation() {
    const m = await artifact("metrics.json");
    if (!m) return;
    $("evaluation").hidden = false;
    const reached = m.task === "multilabel"
      ? `Subset accuracy ${MB.fmt(m.accuracy)}, micro F1 ${MB.fmt(m.micro_f1)}, macro F1 ${MB.fmt(m.macro_f1)}, ` +
        `mAP ${MB.fmt(m.mean_average_precision)}`
      : `Validation accuracy ${MB.fmt(m.accuracy)}, macro F1 ${MB.fmt(m.macro_f1)}`;
    $("eval-summary").textContent = `${reached}, ` +
      `log loss ${MB.fmt(m.log_loss)} on ${m.num_images} images; best epoch ${m.best_epoch} of ${m.epochs_run} ` +
      `(${String(m.stopped).replace(/_/g, " ")}), ${MB.fmt(m.images_per_s, 0)} images/s.`;
    const gallery = (query) => `${root.dataset.page}/gallery?${new URLSearchParams(query)}`;
    if (m.task === "multilabel") return showLabels(m, gallery);
    $("per-label").tBodies[0].replaceChildren(...(m.per_label || []).map((row) => MB.el("tr", {},
      MB.el("td", {}, MB.el("a", { href: gallery({ true: row.label, all: "1" }), text: row.label })),
      MB.el("td", { text: MB.fmt(row.precision) }),
      MB.el("td", { text: MB.fmt(row.recall) }), MB.el("td", { text: MB.fmt(row.f1) }),
      MB.el("td", { text: String(row.support) }))));
    const labels = m.labels || [];
    const matrix = $("confusion-matrix");
    matrix.tHead.replaceChildren(MB.el("tr", {}, MB.el("th", { text: "" }),
      ...labels.map((label) => MB.el("th", { text: label }))));
    matrix.tBodies[0].replaceChildren(...(m.confusion_matrix || []).map((row, i) => MB.el("tr", {},
      MB.el("th", { text: labels[i] }),
      ...row.map((count, j) => MB.el("td", { class: i === j ? "diagonal" : "" }, count ? MB.el("a", {
        href: gallery({ true: labels[i], predicted: labels[j], all: "1" }), text: String(count),
        title: `${count} images of ${labels[i]} predicted as ${labels[j]}` }) : "0")))));
  }

  function showLabels(m, gallery) {
    // A multi-label model: each label's threshold (chosen on validation to maximise its F1) and average
    // precision beside precision, recall and F1 at that threshold; no confusion matrix (labels overlap).
    // A label links to its images: those it missed or falsely found first, the most confidently wrong first.
    $("per-label").tHead.replaceChildren(MB.el("tr", {}, ...["label", "threshold", "precision", "recall", "F1",
      "AP", "images"].map((name) => MB.el("th", { text: name }))));
    $("per-label").tBodies[0].replaceChildren(...(m.per_label || []).map((row) => MB.el("tr", {},
      MB.el("td", {}, MB.el("a", { href: gallery({ label: row.label, all: "1" }), text: row.label })),
      MB.el("td", { text: MB.fmt(row.threshold) }),
      MB.el("td", { text: MB.fmt(row.precision) }), MB.el("td", { text: MB.fmt(row.recall) }),
      MB.el("td", { text: MB.fmt(row.f1) }), MB.el("td", { text: MB.fmt(row.average_precision) }),
      MB.el("td", { text: String(row.support) }))));
    $("confusion-matrix").closest("div").hidden = true;
  }

  async function finish(run) {
    finished = true;
    $("progress-phase").textContent = run.status.toLowerCase();
    await showDataReport();  // again: training added the likely wrong labels and the overfitting check
    await showEvaluation();
    $("downloads").hidden = !run.has_results;
    $("try-model").hidden = !run.has_results;
  }

  async function showRun(run) {
    lastRun = run;
    showStatus(run);
    showProgress(run);
    if (!dataReportShown && run.status !== "Queued") await showDataReport();
  }

  // --- the event stream ---------------------------------------------------------------------------------
  function listen() {
    if (!window.EventSource) return poll();
    const source = new EventSource(`${api}/events`);
    let failures = 0, snapshot = false, fellBack = false, ended = false;
    const fallBack = () => {
      if (fellBack || finished) return;
      fellBack = true;
      source.close();
      poll();
    };
    const watchdog = setTimeout(() => { if (!snapshot) fallBack(); }, SNAPSHOT_MS);
    // Events are handled one after another, in the order they came (some handlers wait for the API).
    let queue = Promise.resolve();
    const on = (kind, handle) => source.addEventListener(kind, (event) => {
      failures = 0;
      $("connection").hidden = true;
      if (kind === "end") {  // the server closes the stream next: EventSource must not reconnect
        ended = true;
        source.close();
        clearTimeout(watchdog);
      }
      const data = JSON.parse(event.data);
      queue = queue.then(() => handle(data)).catch(() => { $("connection").hidden = false; });
    });
    on("snapshot", async (data) => {
      snapshot = true;
      clearTimeout(watchdog);
      history = data.history;
      showHistory(history);
      metrics.clear();
      addMetrics(data.metrics);
      if (data.logs.length && data.logs[0].seq > logSeq + 1) {  // a reconnect that missed lines: start over
        $("log-tail").textContent = "";
        logSeq = data.logs[0].seq - 1;
      }
      showLogs(data.logs);
      await showRun(data.run);
    });
    on("run", showRun);
    on("status", (changes) => { history = history.concat(changes); showHistory(history); });
    on("metrics", addMetrics);
    on("log", showLogs);
    on("end", async () => {
      if (!lastRun || !lastRun.terminal) return fallBack();  // the server could not follow the run: ask the API
      if (!finished) await finish(lastRun);
    });
    source.addEventListener("error", () => {
      if (ended || fellBack) return;
      $("connection").hidden = false;
      failures += 1;  // EventSource reconnects by itself (and the server sends a fresh snapshot)...
      if (source.readyState === EventSource.CLOSED || failures >= STREAM_FAILURES) fallBack();  // ...unless refused
    });
  }

  // --- the fallback: polling the JSON API ---------------------------------------------------------------
  async function poll() {
    try {
      const run = await MB.api(api);
      const [changes, points, tail] = await Promise.all([
        MB.api(`${api}/history`), MB.api(`${api}/metrics`), MB.api(`${api}/logs?after_seq=${logSeq}&limit=1000`)]);
      history = changes;
      showHistory(history);
      addMetrics(points);
      showLogs(tail.lines);
      await showRun(run);
      $("connection").hidden = true;
      if (run.terminal && tail.lines.length < 1000) {
        if (!finished) await finish(run);
        return;
      }
      setTimeout(poll, POLL_MS);
    } catch (error) {
      $("connection").hidden = false;
      setTimeout(poll, POLL_MS * 2);
    }
  }

  $("cancel-run").addEventListener("click", async () => {
    $("cancel-run").disabled = true;
    try {
      showStatus(await MB.api(`${api}/cancel`, { method: "POST" }));
    } catch (error) {
      $("run-error").hidden = false;
      $("run-error").textContent = error.message;
    }
  });

  // "Try the model": the scores first (fast, the ONNX model), then where the network finds a label (its
  // checkpoint, a few seconds); each label's button explains that label instead of the prediction.
  const METHOD_NAMES = { gradcam: "Grad-CAM", integrated_gradients: "Integrated gradients" };
  let explaining = 0;  // the latest request: an older answer arriving late is dropped

  async function explainImage(file, label) {
    const mine = ++explaining;
    const form = new FormData();
    form.append("file", file);
    const query = label ? `?label=${encodeURIComponent(label)}` : "";
    $("explain-status").textContent = label ? `Explaining ${label}…` : "Explaining the prediction…";
    $("explain-overlays").replaceChildren();
    try {
      const result = await MB.api(`${api}/explain${query}`, { method: "POST", body: form });
      if (mine !== explaining) return;
      const which = result.label === result.prediction ? " (the prediction)" : "";
      $("explain-status").textContent = `Where the model finds ${result.label}${which}:`;
      $("explain-overlays").replaceChildren(...Object.entries(result.overlays).map(([method, png]) =>
        MB.el("figure", { class: "overlay", "data-method": method, "data-label": result.label },
          MB.el("img", { src: `data:image/png;base64,${png}`, alt: `${METHOD_NAMES[method] || method} for ${result.label}`,
                         width: String(result.width), height: String(result.height) }),
          MB.el("figcaption", { text: METHOD_NAMES[method] || method }))));
    } catch (error) {
      if (mine !== explaining) return;
      const hint = error.body && error.body.hint ? ` Fix: ${error.body.hint}` : "";
      $("explain-status").textContent = `No explanation: ${error.message}${hint}`;
    }
  }

  $("predict-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("predict-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    $("predict-button").disabled = true;
    $("predict-error").hidden = true;
    try {
      const result = await MB.api(`${api}/predict`, { method: "POST", body: form });
      const found = result.predicted_labels;  // a multi-label model's labels over their thresholds
      $("predict-label").textContent = found ? (found.join(", ") || "(no label over its threshold)") : result.prediction;
      const predicted = (label) => (found ? found.includes(label) : label === result.prediction);
      $("predict-scores").tBodies[0].replaceChildren(...result.labels.map((label, i) => {
        const bar = MB.el("div", { class: "score-bar" });
        bar.style.width = `${Math.round(result.score[i] * 100)}%`;
        const why = MB.el("button", { type: "button", class: "explain-label", "data-label": label, text: "explain" });
        why.addEventListener("click", () => explainImage(file, label));
        return MB.el("tr", { class: predicted(label) ? "predicted" : "" },
          MB.el("td", { text: label }), MB.el("td", { text: MB.fmt(result.score[i]) }), MB.el("td", {}, bar),
          MB.el("td", {}, why));
      }));
      $("predict-result").hidden = false;
      explainImage(file, null);
    } catch (error) {
      $("predict-result").hidden = true;
      $("predict-error").textContent = error.body && error.body.hint ? `${error.message} Fix: ${error.body.hint}` : error.message;
      $("predict-error").hidden = false;
    } finally {
      $("predict-button").disabled = false;
    }
  });

  showMetrics([]);
  listen();
});
