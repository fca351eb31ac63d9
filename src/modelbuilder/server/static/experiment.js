/* The experiment page: compare the validation curves of the runs ticked in the table. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("compare-button");
  if (!button) return;
  const note = document.getElementById("compare-note");

  async function compare() {
    const picked = Array.from(document.querySelectorAll("input.compare-pick:checked")).map((box) => box.value);
    note.textContent = picked.length ? "" : "Tick at least one run.";
    const results = await Promise.all(picked.map(async (id) => {
      try {
        return { id, points: await MB.api(`/api/v1/runs/${encodeURIComponent(id)}/metrics`) };
      } catch (error) {
        return { id, points: [], error };
      }
    }));
    const series = (key) => results.map((r, i) => ({
      name: r.id, cls: `series-${i % 8}`,
      points: r.points.filter((p) => p.key === key).map((p) => [p.step, p.value]),
    }));
    MB.lineChart(document.getElementById("compare-accuracy"), series("val_accuracy"), { range: [0, 1], empty: "no epochs yet" });
    MB.lineChart(document.getElementById("compare-loss"), series("val_loss"), { empty: "no epochs yet" });
    const failed = results.filter((r) => r.error).map((r) => r.id);
    if (failed.length) note.textContent = `Could not read: ${failed.join(", ")}`;
  }

  button.addEventListener("click", compare);
  MB.lineChart(document.getElementById("compare-accuracy"), [], { range: [0, 1], empty: "tick runs, then compare" });
  MB.lineChart(document.getElementById("compare-loss"), [], { empty: "tick runs, then compare" });
});
