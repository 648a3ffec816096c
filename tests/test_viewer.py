"""What a pathologist expects of the viewer, in headless Chromium through
Playwright: the slide at physical scale (a scale bar that follows the zoom, µm/px and
magnification as the OME-XML records them), and a page that keeps loading tiles past its
short tile signatures for as long as its link lasts, then says the link has expired.

Both checks share one real `gigasynth serve` with 3-second tile signatures and one real
job. The resolution rule is tested in test_synth.py and test_service_api.py, the link and
tile-signature endpoints in test_links.py.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gigasynth.io.omexml import OME_NS
from gigasynth_service.config import load_config
from gigasynth_service.paths import JobPaths
from tests.service_fixtures import (
    MICRO_MODEL,
    add_token,
    running_server,
    wait_for_job,
    write_micro_model,
)
from tests.test_service_e2e import CHROMIUM, CHROMIUM_ARGS


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def params(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query).items()}


# ---- the viewer in a browser ----

LINK_TTL_S = 15
TILE_TTL_S = 3


@pytest.fixture(scope="module")
def browser_and_job(tmp_path_factory):
    """(server, token, data dir, finished 1024 x 768 job, Playwright browser); tile
    signatures of the server last 3 s."""
    if not CHROMIUM.exists():
        pytest.skip(
            "no browser: Debian's chromium is not installed at /usr/bin/chromium "
            "(apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed"
    )
    if not (load_config().openseadragon_dir / "openseadragon.min.js").is_file():
        pytest.skip("OpenSeadragon is not installed: run `npm ci` in the repository root")
    data_dir = tmp_path_factory.mktemp("viewer") / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "viewer", max_concurrent=2)
    with (
        running_server(data_dir, {"GIGASYNTH_TILE_TTL_S": str(TILE_TTL_S)}) as server,
        httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as api,
    ):
        submitted = api.post(
            "/v1/jobs",
            json={"model": MICRO_MODEL, "width": 1024, "height": 768, "steps": 2, "tile": 512},
        )
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(api, submitted.json()["id"], timeout=180)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield server, token, data_dir, job, browser
            finally:
                browser.close()


class Tile(NamedTuple):
    """One tile answer the page got."""

    at: float  # when (Unix seconds)
    status: int
    sig: str | None  # the tile signature it was asked with
    exp: int  # and that signature's expiry
    path: str


def open_viewer(browser, url: str, problems: list[str], tiles: list[Tile]):
    """A page at `url`, its first view fully loaded, logging errors to `problems` and
    tile answers to `tiles`."""
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.on("pageerror", lambda e: problems.append(str(e)))

    def response(r) -> None:
        if "_files/" in r.url:
            query = params(urlsplit(r.url).query)
            tiles.append(
                Tile(
                    time.time(),
                    r.status,
                    query.get("sig"),
                    int(query.get("exp", 0)),
                    urlsplit(r.url).path,
                )
            )

    page.on("response", response)
    page.goto(url)
    page.wait_for_selector("#slide canvas", timeout=30_000)
    page.wait_for_function("() => !document.getElementById('scale').hidden", timeout=30_000)
    wait_fully_loaded(page)
    return page


def wait_fully_loaded(page) -> None:
    page.wait_for_function(
        """() => {
        const world = window.gigasynthViewer.world;
        return world.getItemCount() && world.getItemAt(0).getFullyLoaded();
    }""",
        timeout=20_000,
    )


def all_served(tiles: list[Tile]) -> bool:
    """Every tile asked for was served: at once, or (its signature ran out on the way, on
    a loaded machine) when asked again with the renewed one."""
    served = {tile.path for tile in tiles if tile.status == 200}
    return all(tile.path in served for tile in tiles)


def scale_state(page) -> dict:
    """What the page shows of the scale, and OpenSeadragon's own image zoom."""
    page.wait_for_timeout(700)  # the zoom animation settles
    return page.evaluate("""() => {
        const v = window.gigasynthViewer.viewport;
        const bar = document.getElementById('scalebar');
        return {imageZoom: v.viewportToImageZoom(v.getZoom(true)),
                width: bar.getBoundingClientRect().width, um: Number(bar.dataset.um),
                label: document.getElementById('scalelabel').textContent,
                view: document.getElementById('zoom').textContent,
                beyond: !document.getElementById('beyond').hidden};
    }""")


def zoom_to_image_zoom(page, image_zoom: float) -> None:
    page.evaluate(f"""() => {{
        const v = window.gigasynthViewer.viewport;
        v.zoomTo(v.imageToViewportZoom({image_zoom}), null, true);
    }}""")


def test_scale_bar_follows_the_zoom_and_matches_the_ome_xml(browser_and_job):
    server, _, data_dir, job, browser = browser_and_job
    xml = (JobPaths.of(data_dir, job["id"]).zarr / "OME" / "METADATA.ome.xml").read_text()
    root = ET.fromstring(xml)
    mpp = float(root.find(f".//{{{OME_NS}}}Pixels").get("PhysicalSizeX"))
    magnification = float(root.find(f".//{{{OME_NS}}}Objective").get("NominalMagnification"))
    problems: list[str] = []
    tiles: list[Tile] = []
    page = open_viewer(browser, server.url + job["links"]["viewer"], problems, tiles)
    try:
        resolution = page.locator("#resolution").inner_text()
        provenance = page.locator("#provenance").inner_text()
        states = [scale_state(page)]
        for image_zoom in (1.0, 3.0):
            zoom_to_image_zoom(page, image_zoom)
            states.append(scale_state(page))
        layout = page.evaluate("""() => ({
            pane: document.getElementById('pane').getBoundingClientRect().bottom,
            window: window.innerHeight, scroll: document.documentElement.scrollHeight,
            navigator: getComputedStyle(document.querySelector('.navigator')).backgroundColor
        })""")
    finally:
        page.close()
    assert not problems, problems
    assert (mpp, magnification) == (0.5, 20.0)  # the micro model's
    assert f"{mpp:g} µm/px" in resolution and f"{magnification:g}x equivalent" in resolution
    home, full, close = states
    assert home["imageZoom"] < 1 and not home["beyond"]
    assert full["imageZoom"] == pytest.approx(1.0) and not full["beyond"]
    assert close["imageZoom"] == pytest.approx(3.0, rel=0.01) and close["beyond"]
    assert home["um"] >= full["um"] > close["um"]  # the bar follows the zoom
    assert home["label"] != close["label"]
    for state in states:
        # The bar is as long on screen as the length it names, at this zoom.
        assert state["width"] == pytest.approx(state["um"] * state["imageZoom"] / mpp, abs=1.5)
        assert 50 <= state["width"] <= 150
        digits = f"{state['um']:g}".replace("0", "").replace(".", "")
        assert digits in ("1", "2", "5"), state  # a round length
        shown = float(f"{magnification * state['imageZoom']:.2g}")
        assert state["view"] == f"{shown:g}x view"  # 2 significant digits
    assert home["label"] == f"{home['um']:g} µm"
    for row in ("1024 x 768 px", "tile512 px", "gigasynth0.", "submitted", "finished", "duration"):
        assert row in provenance.replace("\n", "").replace("\t", ""), (row, provenance)
    assert layout["pane"] == pytest.approx(layout["window"], abs=0.5)  # no strip under it
    assert layout["scroll"] == layout["window"]  # nor a scroll
    assert layout["navigator"] == "rgb(255, 255, 255)"  # no black bars
    assert tiles and all_served(tiles)


@pytest.mark.slow
def test_tiles_load_past_their_signature_until_the_link_ends(browser_and_job):
    server, token, _, job, browser = browser_and_job
    minted = httpx.post(
        f"{server.url}/v1/jobs/{job['id']}/links",
        headers=auth(token),
        json={"ttl_s": LINK_TTL_S},
        timeout=30,
    )
    assert minted.status_code == 201, minted.text
    expires = minted.json()["expires"]
    problems: list[str] = []
    tiles: list[Tile] = []
    page = open_viewer(browser, server.url + minted.json()["viewer"], problems, tiles)
    try:
        first = min(tiles, key=lambda tile: tile.at)  # the page's first signature
        page.wait_for_timeout(max(0, (first.exp + 1 - time.time()) * 1000))
        assert time.time() < expires - 2, "the machine is too slow for this test's timings"
        zoom_to_image_zoom(page, 2.0)  # new tiles, past the first signature
        # The first view may already hold every tile this zoom shows (whether it does
        # depends on timing): drop them, so tiles are asked for again, after that signature.
        page.evaluate("() => window.gigasynthViewer.world.resetItems()")
        wait_fully_loaded(page)
        zoomed_at = time.time()
        page.wait_for_selector("#expired:not([hidden])", timeout=(LINK_TTL_S + 10) * 1000)
        shown_at = time.time()
        message = page.locator("#expired").inner_text()
        link_panel = page.locator("#link").inner_text()
    finally:
        page.close()
    assert first.exp <= first.at + TILE_TTL_S + 1 < expires  # a short signature...
    # ...yet tiles asked for after it ended were served, with a renewed one.
    late = [tile for tile in tiles if first.exp < tile.at < zoomed_at and tile.status == 200]
    assert any(tile.sig != first.sig and tile.exp > first.exp for tile in late), late
    assert all_served([tile for tile in tiles if tile.at < expires])
    assert all(tile.exp <= expires for tile in tiles)  # never past the link
    assert shown_at >= expires and "expired" in message and "new link" in message
    assert "expired" in link_panel
    assert not problems, problems
