"""`sdn serve` driven in headless Chromium (Debian's package, through Playwright).

The server runs in this process with two tiny models: one fitted to draw each colour word of the
caption as a field of that colour (conftest.fit_colour_model) and one that draws plain grey. So the
tests show that what is typed in the page reaches the model and that its own drawing comes back
(red for a red caption, then yellow), that bad input gets a message, and that a ranking made in the
page lands in SQLite under the right models; they say nothing about image quality.
Set SDN_SERVE_SCREENSHOTS=docs to refresh the README's screenshots.
"""

import json
import os
import shutil
import socket
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ColourEncoder, fit_colour_model

from sdn.networks import text

pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e '.[web]')")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def grey_model(out: Path) -> Path:
    from sdn.networks.generator import Generator
    from sdn.networks.teachers import teacher_taps
    from sdn.training.checkpoint import export_generator

    generator = Generator(teacher_taps("efficientnet-lite0"), 32, ColourEncoder.dim, 32, 1)
    torch.nn.init.zeros_(generator.steps[-1].conv.weight)  # the last layer's bias alone: 0.5 everywhere
    config = {"teacher": "efficientnet-lite0", "resolution": 32, "text_encoder": ColourEncoder.name,
              "text_dim": ColourEncoder.dim, "fc_dim": 32, "n_outputs": 1, "precision": "fp32", "step": 0}
    out.mkdir(parents=True)
    return export_generator(generator, config, out / "generator.safetensors")


def colour_cache(root: Path) -> Path:
    """A prepared cache of plain-colour 'flowers': red and yellow are the unseen test classes."""
    from PIL import Image

    from sdn.data.cache import prepare

    (root / "images").mkdir(parents=True)
    lines = []
    for colour in ("red", "yellow", "blue", "green"):
        Image.new("RGB", (40, 40), tuple(int(255 * v) for v in ColourEncoder.colours[colour])).save(root / "images" / f"{colour}.png")
        lines.append(json.dumps({"image": f"images/{colour}.png", "class": f"{colour} flower",
                                 "captions": [f"a {colour} flower", f"this flower is {colour}"],
                                 "split": "test" if colour in ("red", "yellow") else "train"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return prepare("folder", root, root / "cache", size=32, progress=False)


@pytest.fixture(scope="module")
def server(module_tmp):
    from sdn.serve import ranking_db
    from sdn.serve.app import build_app, launch
    from sdn.serve.examples import CaptionSource
    from sdn.serve.models import load_models

    tmp = module_tmp("serve")
    fit_colour_model(tmp / "colour")
    grey_model(tmp / "grey")
    colour, grey = "colour/generator.safetensors", "grey/generator.safetensors"  # the models' names, as typed
    db = ranking_db.create(tmp / "ranks.sqlite")
    with pytest.MonkeyPatch.context() as mp:  # the encoder is built while the models load
        mp.setitem(text.TEXT_ENCODERS, ColourEncoder.name, ColourEncoder)
        mp.chdir(tmp)
        models = load_models([colour, grey], [])
    demo = build_app(models, CaptionSource(colour_cache(tmp / "data")), str(db), show_real=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, "127.0.0.1", port)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", db=db, colour=colour, grey=grey)
    demo.close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright): browser tests skipped")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no Debian chromium on this machine (apt-get install chromium): browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.set_default_timeout(90_000)  # a busy 2-core machine
    yield page
    page.close()


def read_image(page, selector: str) -> tuple[str, torch.Tensor]:
    """The src of the first image under `selector` and its pixels, fetched as the browser would."""
    from PIL import Image

    src = page.locator(f"{selector} img").first.get_attribute("src")
    with Image.open(BytesIO(page.request.get(src).body())) as im:
        pixels = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
    return src, pixels.view(-1, 3).float() / 255


def share(pixels: torch.Tensor, colour: str) -> float:
    """Fraction of pixels within 0.2 of the colour per channel."""
    return ((pixels - torch.tensor(ColourEncoder.colours[colour])).abs().amax(1) < 0.2).float().mean().item()


def screenshot(page, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("SDN_SERVE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=full_page)


def wait_for_text(page, selector: str, words: str) -> str:
    page.wait_for_function("([s, w]) => (document.querySelector(s)?.innerText || '').includes(w)", arg=[selector, words])
    return page.inner_text(selector)


def api_draw(client, url: str, body: bytes) -> tuple[int, list, str]:
    """Gradio's HTTP API as a script uses it: (status of the call, drawings, message)."""
    r = client.post(f"{url}gradio_api/call/draw", content=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        return r.status_code, [], r.text
    events = client.get(f"{url}gradio_api/call/draw/{r.json()['event_id']}").text
    data = [line[5:] for line in events.splitlines() if line.startswith("data:")][-1]
    gallery, message = json.loads(data)
    return r.status_code, gallery, message


def test_http_api_draws_and_refuses_undecodable_text_and_keeps_serving(server):
    import httpx

    with httpx.Client(timeout=60) as client:
        status, gallery, message = api_draw(client, server.url, json.dumps({"data": ["red\nyellow", server.colour]}).encode())
        assert status == 200 and [g["caption"] for g in gallery] == ["red", "yellow"] and "Drew 2" in message
        png = client.get(gallery[0]["image"]["url"])
        assert png.headers["content-type"] == "image/png"
        # A lone surrogate (what undecodable input becomes once decoded) gets a message ...
        status, gallery, message = api_draw(client, server.url, b'{"data": ["red \\ud800", "%s"]}' % server.colour.encode())
        assert (status, gallery) == (200, []) and "caption 1 is not valid UTF-8 text" in message
        # ... and bytes that are not UTF-8 at all are refused before they reach sdn.
        assert api_draw(client, server.url, b'{"data": ["red \xff\xfe", "%s"]}' % server.colour.encode())[0] == 400
        assert api_draw(client, server.url, json.dumps({"data": ["red", server.colour]}).encode())[1] != []


def test_page_draws_typed_captions_and_refuses_an_empty_one(server, page):
    page.goto(server.url)
    page.fill("#captions textarea", "a flower with bright red petals")
    page.click("#draw")
    assert "Drew 1 caption(s)" in wait_for_text(page, "#message", "Drew")
    red_src, red = read_image(page, "#gallery")
    assert share(red, "red") > 0.8, f"mostly red expected; mean colour {red.mean(0).tolist()}"

    page.fill("#captions textarea", "yellow petals and a dark center")
    page.click("#draw")
    page.wait_for_function("old => document.querySelector('#gallery img')?.src !== old", arg=red_src)
    _, yellow = read_image(page, "#gallery")
    assert share(yellow, "yellow") > 0.8 and share(yellow, "red") < 0.05, f"mean colour {yellow.mean(0).tolist()}"

    page.fill("#captions textarea", "")
    page.click("#draw")
    assert "type a caption first: the caption box is empty" in wait_for_text(page, "#message", "Cannot draw")
    assert page.locator("#gallery img").count() == 0


def test_page_bounds_captions_and_interpolation_steps(server, page):
    page.goto(server.url)
    page.fill("#captions textarea", "\n".join(["red"] * 17))
    page.click("#draw")
    assert "17 captions: at most 16" in wait_for_text(page, "#message", "Cannot draw")
    page.fill("#caption-a textarea", "red")
    page.fill("#caption-b textarea", "yellow")
    page.fill("#steps input", "17")
    page.click("#interpolate")
    assert "between 2 and 16" in wait_for_text(page, "#strip-message", "Cannot draw")
    page.fill("#steps input", "4")
    page.click("#interpolate")
    wait_for_text(page, "#strip-message", "From A")
    page.wait_for_function("() => document.querySelectorAll('#strip img').length === 4")
    # A caption of the --data cache is shown beside its real image.
    page.fill("#captions textarea", "a flower with bright red petals\nthis flower is yellow")
    page.click("#draw")
    wait_for_text(page, "#message", "Drew 2 caption(s)")
    labels = page.locator("#gallery .caption-label").all_inner_texts()
    assert labels == ["a flower with bright red petals", "real image (yellow flower): this flower is yellow", "this flower is yellow"]
    screenshot(page, "serve.png", full_page=True)


def test_a_ranking_made_in_the_page_is_stored_under_the_right_models(server, page):
    from sdn.serve.ranking_db import read_answers

    page.goto(server.url + "rank")
    caption = wait_for_text(page, "#rank-caption", "flower").strip()
    colour = "red" if "red" in caption else "yellow"
    _, real = read_image(page, "#rank-real")
    assert share(real, colour) > 0.9  # the caption's own image, from the cache
    shown = {letter: read_image(page, f"#rank-image-{letter}")[1] for letter in "AB"}
    by_colour = {letter: ("colour" if share(pixels, colour) > 0.5 else "grey") for letter, pixels in shown.items()}
    assert sorted(by_colour.values()) == ["colour", "grey"]
    screenshot(page, "serve-rank.png")

    page.locator("#rank-A").get_by_label("1", exact=True).check()
    page.locator("#rank-B").get_by_label("1", exact=True).check()
    page.click("#rank-save")
    assert "different rank" in wait_for_text(page, "#rank-status", "Not saved")
    assert read_answers(server.db) == []

    page.locator("#rank-criterion").get_by_label("match to the caption").check()
    for letter, kind in by_colour.items():  # the colour model best
        page.locator(f"#rank-{letter}").get_by_label("1" if kind == "colour" else "2", exact=True).check()
    page.click("#rank-save")
    wait_for_text(page, "#rank-status", "Saved answer")
    [row] = read_answers(server.db)
    assert row["caption"] == caption and row["criterion"] == "correlation" and row["real_shown"] == 1
    assert dict(zip(row["models"], row["ranks"])) == {server.colour: 1, server.grey: 2}
    assert row["models"] == [server.colour if by_colour[letter] == "colour" else server.grey for letter in "AB"]

    page.locator("#rank-A").get_by_label("2", exact=True).check()  # the next caption, any ranking
    page.locator("#rank-B").get_by_label("1", exact=True).check()
    page.click("#rank-save")
    wait_for_text(page, "#rank-status", "Saved answer 2")
    rows = read_answers(server.db)
    assert len(rows) == 2 and rows[1]["rater"] == rows[0]["rater"] and len(rows[0]["rater"]) == 16
