// The gigasynth viewer: polls the job's status and opens its DeepZoom pyramid once it exists.
// Every request carries the page's signed link (data-query); no token lives in the page.
(function () {
  "use strict";
  const jobId = document.body.dataset.job;
  const query = document.body.dataset.query;
  const api = "../v1/";
  let viewer = null;

  function fill(id, rows) {
    const list = document.getElementById(id);
    list.replaceChildren();
    for (const [name, value] of rows) {
      if (value === null || value === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    }
  }

  function seconds(s) {
    if (s === null || s === undefined) return null;
    return s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`;
  }

  function render(job) {
    const p = job.progress;
    const r = job.request;
    document.getElementById("state").textContent =
      job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : "");
    document.getElementById("bar").value = job.state === "succeeded" ? 1 : (p ? p.fraction : 0);
    fill("progress", [
      ["phase", p && p.phase],
      ["step", p && `${p.step} / ${p.total_steps}`],
      ["tiles", p && p.tiles_total ? `${p.tiles_done} / ${p.tiles_total}` : null],
      ["throughput", job.throughput_mpx_steps_per_s !== null
        ? `${job.throughput_mpx_steps_per_s.toFixed(3)} Mpx-steps/s` : null],
      ["ETA", seconds(job.eta_s)],
    ]);
    const prov = job.provenance || {};
    fill("provenance", [
      ["model", r.model],
      ["checkpoint", prov.checkpoint_sha256 ? prov.checkpoint_sha256.slice(0, 16) : null],
      ["size", `${r.width} x ${r.height} px`],
      ["seed", r.seed],
      ["sampler", r.sampler === "ddim" ? `ddim, ${r.steps} steps, eta ${r.eta}` : "ddpm"],
      ["tile", r.tile || "whole image"],
      ["mpp", r.mpp],
      ["synthetic", "yes"],
    ]);
    const error = document.getElementById("error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
  }

  function open() {
    if (viewer) return;
    document.getElementById("waiting").remove();
    viewer = OpenSeadragon({
      id: "slide",
      prefixUrl: "../static/openseadragon/images/",
      tileSources: `${api}slides/${jobId}.dzi?${query}`,
      showNavigator: true,
      maxZoomPixelRatio: 4,
    });
  }

  async function poll() {
    let job = null;
    try {
      const response = await fetch(`${api}jobs/${jobId}?${query}`, { cache: "no-store" });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      job = body;
    } catch (err) {
      const error = document.getElementById("error");
      error.hidden = false;
      error.textContent = `status unavailable: ${err.message}`;
      setTimeout(poll, 5000);
      return;
    }
    render(job);
    if (job.state === "succeeded") open();
    else if (job.state === "queued" || job.state === "running") setTimeout(poll, 2000);
    else document.getElementById("waiting").textContent = `The job is ${job.state}: no slide.`;
  }

  poll();
})();
