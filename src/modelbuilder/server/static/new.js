/* New training: upload a zip in chunks (it becomes a data asset) or pick an asset, show its labels, counts and
   data report, then start the run through the API and move to its page. Text from the server reaches the page
   through textContent only. */
"use strict";

(() => {
  const form = document.getElementById("new-training");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const workspace = form.dataset.workspace;
  const base = `/api/v1/workspaces/${encodeURIComponent(workspace)}/data`;
  let chosen = null;

  const said = (error) => (error.body && error.body.hint ? `${error.message} Fix: ${error.body.hint}` : error.message);
  const slug = (text) => text.replace(/\.zip$/i, "").replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^[-_]+|[-_]+$/g, "")
    .slice(0, 64);
  const json = (body) => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

  function show(version) {
    chosen = version;
    $("chosen-data").textContent = version.ref;
    const rows = $("data-labels").querySelector("tbody");
    rows.replaceChildren(...Object.entries(version.labels).map(([label, count]) =>
      MB.el("tr", { "data-label": label }, MB.el("td", { text: label }), MB.el("td", { text: String(count) }))));
    const skipped = (version.report.skipped || []).slice(0, 20).map((s) =>
      MB.el("li", { class: "skipped", text: `skipped ${s.path}: ${s.reason}` }));
    $("data-report").replaceChildren(...(version.report.summary || []).map((line) =>
      MB.el("li", { class: `level-${line.level}`, text: line.text + (line.fix ? ` Fix: ${line.fix}` : "") })),
    ...skipped);
    $("data-summary").hidden = false;
    $("start-training").disabled = false;
  }

  // A folder chosen in the browser is sent as the server reads a zip: one stored (uncompressed) zip of its files,
  // built here (images are compressed already). CRC-32 as the zip format defines it.
  const CRC = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i += 1) c = CRC[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  const header = (size) => new DataView(new ArrayBuffer(size));
  async function zipFolder(files) {
    const parts = [], central = [];
    let offset = 0;
    for (const file of files) {
      const name = new TextEncoder().encode(file.webkitRelativePath || file.name);
      const crc = crc32(new Uint8Array(await file.arrayBuffer()));
      const local = header(30);
      [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x800, 2], [14, crc, 4], [18, file.size, 4], [22, file.size, 4],
       [26, name.length, 2]].forEach(([at, value, width]) => (width === 4 ? local.setUint32(at, value, true)
        : local.setUint16(at, value, true)));
      const entry = header(46);
      [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x800, 2], [16, crc, 4], [20, file.size, 4],
       [24, file.size, 4], [28, name.length, 2], [42, offset, 4]].forEach(([at, value, width]) => (width === 4
        ? entry.setUint32(at, value, true) : entry.setUint16(at, value, true)));
      parts.push(local, name, file);
      central.push(entry, name);
      offset += 30 + name.length + file.size;
      if (offset > 0xffffffff) throw new Error("The folder is over 4 GiB; upload it as a zip, or with 'modelbuilder data upload'.");
    }
    const size = central.reduce((n, part) => n + part.byteLength, 0);
    const end = header(22);
    [[0, 0x06054b50, 4], [8, files.length, 2], [10, files.length, 2], [12, size, 4], [16, offset, 4]]
      .forEach(([at, value, width]) => (width === 4 ? end.setUint32(at, value, true) : end.setUint16(at, value, true)));
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  async function sha256(file) {
    if (!(window.crypto && window.crypto.subtle)) return null; // not a secure context: the server checks the size
    const digest = await window.crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function upload() {
    const folder = [...$("data-folder").files];
    const status = $("upload-status");
    status.className = "hint";
    if (!$("data-file").files[0] && !folder.length) { status.textContent = "Choose a zip or a folder first."; return; }
    const label = $("data-file").files[0] ? $("data-file").files[0].name : folder[0].webkitRelativePath.split("/")[0];
    const name = $("asset-name").value.trim() || slug(label);
    const bar = $("upload-bar").firstElementChild;
    $("upload-button").disabled = true;
    try {
      status.textContent = `Uploading ${label} as ${name}…`;
      const file = $("data-file").files[0] || await zipFolder(folder);
      const request = { name, size: file.size };
      const digest = await sha256(file);
      if (digest) request.sha256 = digest;
      let upload = await MB.api(`${base}/uploads`, json(request));
      while (upload.offset < file.size) {
        const chunk = file.slice(upload.offset, upload.offset + upload.chunk_size);
        upload = await MB.api(`${base}/uploads/${upload.id}?offset=${upload.offset}`,
          { method: "PUT", headers: { "Content-Type": "application/octet-stream" }, body: chunk });
        bar.style.width = `${Math.round((100 * upload.offset) / file.size)}%`;
      }
      status.textContent = "Checking the images…";
      const done = await MB.api(`${base}/uploads/${upload.id}/complete`, { method: "POST" });
      status.textContent = done.created ? `Uploaded as ${done.version.ref}.` : `Unchanged: this is ${done.version.ref} already.`;
      const select = $("data-asset");
      if (![...select.options].some((o) => o.value === done.version.ref)) {
        select.append(MB.el("option", { value: done.version.ref, text: done.version.ref }));
      }
      select.value = done.version.ref;
      show(done.version);
    } catch (error) {
      status.textContent = said(error);
      status.className = "error";
    } finally {
      $("upload-button").disabled = false;
    }
  }

  async function pick(ref) {
    if (!ref) return;
    const [name, version] = ref.split(":");
    try {
      show(await MB.api(`${base}/${encodeURIComponent(name)}/versions/${encodeURIComponent(version || "latest")}`));
    } catch (error) {
      $("upload-status").textContent = said(error);
    }
  }

  async function start(event) {
    event.preventDefault();
    if (!chosen) return;
    const recipe = { data: chosen.ref };
    const number = (id) => ($(id).value ? Number($(id).value) : null);
    if ($("project-name").value.trim()) recipe.name = $("project-name").value.trim();
    if (number("time-budget")) recipe.time_budget_s = number("time-budget") * 60;
    if (number("epochs")) recipe.epochs = number("epochs");
    if (number("image-size")) recipe.image_size = number("image-size");
    if ($("architecture").value) recipe.architecture = $("architecture").value;
    if ($("weights").value) recipe.weights = $("weights").value;
    const fallback = chosen.asset.length >= 3 ? chosen.asset.slice(0, 36) : "default";
    const body = { workspace, compute: $("compute-select").value, recipe,
                   experiment: $("experiment-name").value.trim() || fallback };
    $("start-training").disabled = true;
    try {
      const run = await MB.api("/api/v1/runs", json(body));
      window.location.assign(run.portal_path);
    } catch (error) {
      $("start-status").textContent = said(error);
      $("start-training").disabled = false;
    }
  }

  $("priority-select").addEventListener("change", (event) => {
    // A run's priority is its compute's: the choice narrows the computes offered to those of that priority.
    const select = $("compute-select");
    const options = [...select.options];
    for (const option of options) option.hidden = Boolean(event.target.value) && option.dataset.priority !== event.target.value;
    const first = options.find((option) => !option.hidden);
    if (first) select.value = first.value;
    $("priority-none").hidden = Boolean(first);
    $("start-training").disabled = !chosen || !first;
  });
  $("upload-button").addEventListener("click", upload);
  $("data-file").addEventListener("change", () => { if ($("data-file").files.length) $("data-folder").value = ""; });
  $("data-folder").addEventListener("change", () => { if ($("data-folder").files.length) $("data-file").value = ""; });
  $("data-asset").addEventListener("change", (event) => pick(event.target.value));
  $("workspace-select").addEventListener("change", (event) => {
    window.location.assign(`/new?workspace=${encodeURIComponent(event.target.value)}`);
  });
  form.addEventListener("submit", start);
  if (form.dataset.preset) { $("data-asset").value = form.dataset.preset; pick(form.dataset.preset); }
})();
