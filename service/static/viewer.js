// The gigasynth viewer: polls the job's status and opens its DeepZoom pyramid once it exists,
// with a scale bar in µm/mm drawn from the slide's resolution (the job's provenance: the
// figures the OME-XML records). The page's signed link (data-query) carries its status polls
// and buys short-lived tile signatures, renewed until the link itself expires; no token
// lives in the page.
(function () {
  "use strict";
  const jobId = document.body.dataset.job;
  const link = document.body.dataset.query;
  const linkExp = Number(new URLSearchParams(link).get("exp"));
  const api = "../v1/";
  const BAR_MAX_PX = 150;           // the scale bar's longest length on screen
  let viewer = null;
  let slide = null;                 // {mpp, magnification} once the status says
  let tileQuery = null;             // the current tile signature (exp=...&sig=...)
  let tileTimer = null;
  let renewing = null;              // the tile-signature request under way
  let ended = false;

  const $ = (id) => document.getElementById(id);

  function fill(id, rows) {
    const list = $(id);
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
    if (s < 90) return `${s.toFixed(0)} s`;
    if (s < 5400) return `${(s / 60).toFixed(1)} min`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }

  function when(unix) {
    if (!unix) return null;
    const d = new Date(unix * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  function magnification(m) {
    return `${Number(m.toPrecision(2))}x`;     // two significant digits, as the OME-XML
  }

  function eta(job) {
    if (job.state !== "running") return null;
    if (job.eta_s !== null) return seconds(job.eta_s);
    return job.progress && job.progress.phase === "denoise" ? "measuring..." : null;
  }

  function render(job) {
    const p = job.progress;
    const r = job.request;
    const prov = job.provenance || {};
    $("state").textContent =
      job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : "");
    $("bar").value = job.state === "succeeded" ? 1 : (p ? p.fraction : 0);
    if (r.layout && $("layout-panel").hidden) {
      // A cascade job's layout: its own copy, read with the page's link like the status.
      $("layout").src = `${api}jobs/${jobId}/layout?${link}`;
      $("layout-panel").hidden = false;
    }
    fill("progress", [
      ["stage", p && p.stage_label],
      ["phase", p && p.phase],
      ["step", p && p.total_steps ? `${p.step} of ${p.total_steps}` : null],
      ["tiles", p && p.tiles_total ? `${p.tiles_done} of ${p.tiles_total} this step` : null],
      ["throughput", job.throughput_mpx_steps_per_s !== null
        ? `${job.throughput_mpx_steps_per_s.toFixed(3)} Mpx-steps/s` : null],
      ["ETA", eta(job)],
    ]);
    if (prov.mpp) {
      slide = { mpp: prov.mpp, magnification: prov.magnification };
      const source = { model: "the model's", request: "as requested (the model records none)",
        default: "default (the model records none)" }[prov.mpp_source];
      fill("resolution", [
        ["resolution", `${prov.mpp} µm/px${source ? `, ${source}` : ""}`],
        ["magnification", `${magnification(prov.magnification)} equivalent`],
        ["size", `${r.width} x ${r.height} px = ` +
          `${(r.width * prov.mpp / 1000).toFixed(2)} x ${(r.height * prov.mpp / 1000).toFixed(2)} mm`],
      ]);
    }
    fill("provenance", [
      ["model", r.model],
      ["checkpoint", prov.checkpoint_sha256 ? prov.checkpoint_sha256.slice(0, 16) : null],
      ["size", `${r.width} x ${r.height} px`],
      ["seed", r.seed],
      ["sampler", prov.stages ? null
        : r.sampler === "ddim" ? `ddim, ${r.steps} steps, eta ${r.eta}` : "ddpm"],
      ["stages", prov.stages ? prov.stages.map((s) =>
        `${s.condition_downsample}x to ${s.mpp.toPrecision(3)} µm/px, ` +
        (s.sampler === "ddim" ? `ddim ${s.steps} steps` : "ddpm")).join("; ") : null],
      ["layout", r.layout ? r.layout.slice(0, 16) : null],
      ["tile", r.tile ? `${r.tile} px` : "whole image"],
      ["gigasynth", prov.gigasynth_version],
      ["submitted", when(job.created)],
      ["started", when(job.started)],
      ["finished", when(prov.finished)],
      ["duration", seconds(prov.duration_s)],
      ["synthetic", "yes"],
    ]);
    if (!ended) {
      const error = $("error");
      error.hidden = !job.error;
      error.textContent = job.error || "";
    }
  }

  // ---- the link's lifetime and the tile signatures it buys ----

  function showLink() {
    if (ended) return;
    $("link").textContent = `This page's link is valid until ${when(linkExp)}.`;
  }

  function end(reason) {
    if (ended) return;
    ended = true;
    clearTimeout(tileTimer);
    const message = /expired/.test(reason) && linkExp
      ? `This link expired at ${when(linkExp)}.`
      : `This link no longer works (${reason}).`;
    const advice = " The slide stays as shown; ask its owner for a new link to see more.";
    $("expired").textContent = message + advice;
    $("expired").hidden = false;
    $("link").textContent = message;
    $("link").classList.add("error");
  }

  function refreshTiles() {
    if (renewing === null && !ended) {
      clearTimeout(tileTimer);
      renewing = renewTiles().finally(() => { renewing = null; });
    }
    return renewing || Promise.resolve(false);
  }

  async function renewTiles() {
    const asked = performance.now();
    let body;
    try {
      const response = await fetch(`${api}jobs/${jobId}/tile-signature?${link}`,
        { cache: "no-store" });
      body = await response.json();
      if (response.status === 401) { end(body.error); return false; }
      if (!response.ok) throw new Error(body.error || response.statusText);
    } catch (err) {
      if (!ended) tileTimer = setTimeout(refreshTiles, 5000);
      return false;
    }
    tileQuery = body.query;
    // Renew at a third of what is left of it (counting the round trip as spent), so a
    // tile is hardly ever asked for with a stale one. The last one ends with the link
    // (the server never signs past it): asked again just after, the server's 401 ends
    // the page.
    const left = body.expires_in_s - (performance.now() - asked) / 1000;
    const last = body.link_expires_in_s !== null &&
      body.expires_in_s >= body.link_expires_in_s;
    const wait = last ? left + 1.2 : Math.max(0.5, left / 3);
    tileTimer = setTimeout(refreshTiles, Math.min(wait * 1000, 2 ** 31 - 1));
    return true;
  }

  // ---- the scale ----

  function roundLength(um) {
    // The longest 1, 2 or 5 x 10^k µm not above `um`: 10, 20, 50, 100 ... µm, 1, 2 mm.
    const power = Math.pow(10, Math.floor(Math.log10(um)));
    const step = [5, 2, 1].find((m) => m * power <= um * (1 + 1e-9));
    return Number((step * power).toPrecision(1));
  }

  function updateScale() {
    if (!viewer || !slide || !viewer.world.getItemCount()) return;
    const viewport = viewer.viewport;
    const imageZoom = viewport.viewportToImageZoom(viewport.getZoom(true));  // screen px per px
    const umPerScreenPx = slide.mpp / imageZoom;
    const um = roundLength(BAR_MAX_PX * umPerScreenPx);
    const px = um / umPerScreenPx;
    const bar = $("scalebar");
    bar.style.width = `${px.toFixed(1)}px`;
    bar.dataset.um = String(um);
    $("scalelabel").textContent = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
    $("zoom").textContent = `${magnification(slide.magnification * imageZoom)} view`;
    $("beyond").hidden = !(imageZoom > 1 + 1e-6);
    $("scale").hidden = false;
  }

  async function open() {
    if (viewer || ended) return;
    if (tileQuery === null && !(await refreshTiles())) return;
    $("waiting").remove();
    viewer = OpenSeadragon({
      id: "slide",
      prefixUrl: "../static/openseadragon/images/",
      tileSources: `${api}slides/${jobId}.dzi?${tileQuery}`,
      showNavigator: true,
      navigatorBackground: "#fff",
      navigatorBorderColor: "#888",
      maxZoomPixelRatio: 4,
      imageLoaderLimit: 6,         // a slow link is not flooded with tile requests...
      maxTilesPerFrame: 3,         // ...and a fast one fills a large screen quickly
      timeout: 60000,
      tileRetryMax: 3,             // a tile whose signature ran out on the way is asked
      tileRetryDelay: 1000,        // for again, with the signature renewed meanwhile
    });
    viewer.addHandler("tile-load-failed", () => refreshTiles());
    window.gigasynthViewer = viewer;   // for the browser test and the console
    // A tile's request carries the signature current when its download starts (also a
    // retry's), not the one of the moment it was queued: a slow client's queue may
    // outlast a signature. Its cache key leaves the signature out.
    viewer.world.addHandler("add-item", (event) => {
      const source = event.item.source;
      const plain = source.getTileUrl.bind(source);
      const signed = (url) => `${url.split("?")[0]}?${tileQuery}`;
      source.getTileUrl = (level, x, y) => () => signed(plain(level, x, y));
      const download = source.downloadTileStart.bind(source);
      source.downloadTileStart = (job) => {
        job.src = signed(job.src);
        download(job);
      };
    });
    for (const name of ["open", "animation", "resize", "update-viewport"]) {
      viewer.addHandler(name, updateScale);
    }
  }

  async function poll() {
    if (ended) return;
    let job = null;
    try {
      const response = await fetch(`${api}jobs/${jobId}?${link}`, { cache: "no-store" });
      const body = await response.json();
      if (response.status === 401) { end(body.error); return; }
      if (!response.ok) throw new Error(body.error || response.statusText);
      job = body;
    } catch (err) {
      const error = $("error");
      error.hidden = false;
      error.textContent = `status unavailable: ${err.message}`;
      setTimeout(poll, 5000);
      return;
    }
    render(job);
    updateScale();
    if (job.state === "succeeded") open();
    else if (job.state === "queued" || job.state === "running") setTimeout(poll, 2000);
    else $("waiting").textContent = `The job is ${job.state}: no slide.`;
  }

  showLink();
  poll();
})();
