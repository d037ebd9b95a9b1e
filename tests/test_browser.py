"""The built book, page by page, in a real browser (headless Chromium).

The book is built once per test session from the stored results, as ``make book`` does, into a
temporary folder (or read from ``$PRESYN_BOOK_HTML``, an ``_build/html`` folder built before, to check
a build without rebuilding). Every page is served over HTTP on the loopback interface, loaded at a
width of 1,280 px and, once MathJax has typeset it, checked for:

* MathJax errors (a formula that does not typeset) and raw math left in the text (``\\(``, ``$``, ...);
* requests to another host (the pages must work offline: scripts, styles, fonts and MathJax included);
* broken internal links (missing page or anchor) and images or other files that do not load;
* content wider than the window (a horizontal scroll bar at 1,280 px), tables wider than the text
  column (which the theme cuts off and scrolls sideways; code listings may scroll), and figures shown so small
  that their smallest text (9 points, :mod:`lib.book`) is below 9 px;
* more than one search field on screen;
* a screenshot laid out otherwise than the window (a side bar or the article moved for the capture).

A full-page screenshot of every page is saved to ``_build/screenshots/`` (or ``$PRESYN_SCREENSHOTS``).
The test is skipped when Chromium or its driver is not installed (``apt-get install chromium
chromium-driver``; the Makefile and ``.ci/run`` install both when run as root).
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from lib import book

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 900
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(os.environ.get("PRESYN_SCREENSHOTS", ROOT / "_build" / "screenshots"))
EXTRA_PAGES = ["index.html", "genindex.html", "search.html"]  # made by Sphinx, not listed in _toc.yml
MIN_TEXT_PX_AT_SCALE_1 = 9 * book.DPI / 72  # pixels of 9-point text in a figure shown at its own size

try:
    import selenium  # noqa: F401
except ImportError:  # pragma: no cover - selenium is pinned in requirements.txt
    selenium = None

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="headless Chromium not installed: apt-get install chromium chromium-driver"),
    pytest.mark.skipif(selenium is None, reason="selenium not installed (pip install -r requirements.txt)"),
]


def toc_pages() -> list[str]:
    """The book's pages in reading order, as paths of HTML files relative to the build."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]
    return [f"{f}.html" for f in files]


PAGES = toc_pages() + EXTRA_PAGES


@pytest.fixture(scope="session")
def book_html() -> Path:
    """The HTML folder of a book built from the stored results."""
    given = os.environ.get("PRESYN_BOOK_HTML")
    if given:
        return Path(given)
    out = Path(tempfile.mkdtemp(prefix="presyn-book-"))
    env = {k: v for k, v in os.environ.items() if k != "PRESYN_RESULTS"}  # the stored runs, as `make book`
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--keep-going", "-W", "-n"],
        env=env, capture_output=True, text=True,
    )
    assert build.returncode == 0, f"the book does not build:\n{build.stdout[-6000:]}\n{build.stderr[-3000:]}"
    return out / "_build" / "html"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(book_html):
    handler = functools.partial(QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="presyn-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
                 f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}",
                 # nothing outside this machine can be reached: requests elsewhere fail fast (and are reported)
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# Runs in the page once it has loaded: waits for MathJax and every image, then reports what is wrong.
INSPECT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    if (MathJax.typesetPromise) await MathJax.typesetPromise();
  }
  const brokenImages = (await Promise.all([...document.images].map(img => {
    img.loading = "eager";
    return img.decode().then(() => null, () => img.currentSrc || img.src);
  }))).filter(Boolean);
  const errors = [...document.querySelectorAll("mjx-merror, [data-mjx-error]")].map(
    e => e.getAttribute("data-mjx-error") || e.textContent);
  // text outside code, scripts and typeset math that still looks like TeX
  const skip = "pre, code, script, style, noscript, textarea, mjx-container, .highlight";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const rawMath = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    if (/\\\(|\\\)|\\\[|\\\]|\$|\\begin\{|\\frac|\\text\{/.test(text)) rawMath.push(text.trim().slice(0, 120));
  }
  const links = [...document.querySelectorAll("a[href]")].map(a => a.href);
  // figures drawn by the chapters: displayed width over the PNG's own width
  const figures = [...document.querySelectorAll("main img")].filter(img => /\/_images\/.*\.png$/.test(img.src)).map(
    img => ({src: img.src.split("/").pop(), scale: img.getBoundingClientRect().width / img.naturalWidth}));
  // tables that do not fit their text column (the theme lets them scroll sideways, cutting them off)
  const wideTables = [...document.querySelectorAll("article table")].filter(
    t => t.getBoundingClientRect().width > t.parentElement.clientWidth + 1).map(
    t => `${t.querySelector("th, td")?.textContent.trim()}: ${Math.round(t.getBoundingClientRect().width)} px > ${t.parentElement.clientWidth} px`);
  // search fields and buttons on screen (the theme's header bar once added a second one beside the side bar's)
  const searchFields = [...document.querySelectorAll(".search-button-field, .search-button")].filter(
    e => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden").length;
  const root = document.documentElement;
  done({
    wideTables: wideTables, searchFields: searchFields,
    mathjax: !!(window.MathJax && MathJax.startup),
    mathErrors: errors, rawMath: rawMath, brokenImages: brokenImages, links: links, figures: figures,
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, height: root.scrollHeight,
  });
})().catch(e => done({failure: String(e)}));
"""


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def broken_links(links: list[str], server: str, html: Path) -> list[str]:
    broken = []
    for link in links:
        if not link.startswith(server):
            continue  # another host: a plain link for the reader to follow, not loaded by the page
        parts = urlsplit(link)
        target = html / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link} (no such file)")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
            broken.append(f"{link} (no such anchor)")
    return broken


def requests_of(driver, server: str) -> tuple[list[str], list[str]]:
    """Requests to other hosts, and local requests answered with an error, since the last call."""
    foreign, failed = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:", "ftp:")) and not url.startswith(server):
                foreign.append(url)  # (the browser's own chrome:// pages are not the book's)
        elif message["method"] == "Network.responseReceived":
            response = params["response"]
            if (response["url"].startswith(server) and response["status"] >= 400
                    and not response["url"].endswith("/favicon.ico")):  # asked for by the browser, not the page
                failed.append(f"{response['url']} (HTTP {response['status']})")
    return foreign, failed


# Switches off the page's CSS transitions and animations, so that a screenshot shows where things are, not
# where they are moving to.
STILL = """
const style = document.createElement("style");
style.textContent = "*, *::before, *::after { transition: none !important; animation: none !important; }";
document.head.appendChild(style);
"""
# The left edges of the page's main boxes (theme header, side bars, article), rounded to the pixel.
EDGES = """
return [...document.querySelectorAll(".bd-header, .bd-sidebar-primary, .bd-main, .bd-sidebar-secondary, article")]
  .map(e => e.className.split(" ")[0] + " " + Math.round(e.getBoundingClientRect().left));
"""
NEXT_FRAME = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));"


def save_screenshot(driver, page: str, height: int) -> tuple[Path, list[str]]:
    """A full-page screenshot at the window's width; and the page's main boxes whose left edge moved for it.

    The viewport is made as tall as the page (up to 30,000 px) by an explicit device-metrics override
    before the capture, with the page's transitions switched off. (Page.captureScreenshot's own
    ``captureBeyondViewport`` resizes the page to 1 × 1 px and back in this Chromium, which sends the
    theme through its narrow layout, so the capture caught the side bar sliding back in and the page
    shifted left by a varying amount.)
    """
    clip_height = min(height, 30000)
    before = driver.execute_script(EDGES)
    driver.execute_script(STILL)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": clip_height, "deviceScaleFactor": 1, "mobile": False})
    try:
        driver.execute_async_script(NEXT_FRAME)
        during = driver.execute_script(EDGES)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "clip": {"x": 0, "y": 0, "width": WIDTH, "height": clip_height, "scale": 1},
        })
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = SCREENSHOTS / (page.replace("/", "_").removesuffix(".html") + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path, [f"{a} px in the window, {b.rsplit(' ', 1)[1]} px in the screenshot"
                  for a, b in zip(before, during) if a != b]


def test_every_built_page_is_checked(book_html):
    built = {str(p.relative_to(book_html)) for p in book_html.rglob("*.html")
             if not p.relative_to(book_html).parts[0].startswith(("_", "reports"))}
    assert built == set(PAGES)


def test_no_page_links_a_script_style_or_font_of_another_host(book_html):
    pattern = re.compile(r'<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"')
    offending = {}
    for page in book_html.rglob("*.html"):
        hits = [url for url in pattern.findall(page.read_text(errors="replace"))
                if not url.startswith(("http://127.0.0.1", "http://localhost"))]
        if hits:
            offending[str(page.relative_to(book_html))] = hits
    for sheet in book_html.rglob("*.css"):
        hits = re.findall(r'url\(\s*["\']?((?:https?:)?//[^)"\']+)', sheet.read_text(errors="replace"))
        if hits:
            offending[str(sheet.relative_to(book_html))] = hits
    assert not offending


def test_no_displayed_equation_shows_two_numbers(book_html):
    """An equation that gives the paper's number with ``\\tag`` must not also get Sphinx's running number
    (an unstarred amsmath environment does: it showed "(4) (1)")."""
    block = re.compile(r'<div class="[^"]*\bmath\b[^"]*"[^>]*>(.*?)</div>', re.DOTALL)
    doubled = {str(page.relative_to(book_html)): [m[:80] for m in block.findall(page.read_text(errors="replace"))
                                                  if 'class="eqno"' in m and "\\tag" in m]
               for page in book_html.rglob("*.html")}
    assert not {page: hits for page, hits in doubled.items() if hits}


def test_no_page_shows_the_python_repr_of_a_value(book_html):
    """A value glued with the wrong role shows as ``<IPython.core.display.Markdown object>``."""
    pattern = re.compile(r"&lt;[\w.]+ object(?: at 0x[0-9a-f]+)?&gt;")
    shown = {}
    for page in book_html.rglob("*.html"):
        text = re.sub(r"<(script|style)\b.*?</\1>", "", page.read_text(errors="replace"), flags=re.DOTALL)
        if hits := pattern.findall(text):
            shown[str(page.relative_to(book_html))] = hits[:3]
    assert not shown


REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES)
def test_page_in_the_browser(page, book_html, server, browser):
    redirect = REDIRECT.search((book_html / page).read_text(errors="replace"))
    if redirect:  # index.html only forwards to the first page, which is checked itself
        assert (book_html / page).parent.joinpath(redirect.group(1)).is_file(), redirect.group(1)
        return
    requests_of(browser, server)  # forget the previous page's requests
    browser.get(server + page)
    state = browser.execute_async_script(INSPECT)
    assert "failure" not in state, state.get("failure")
    shot, moved = save_screenshot(browser, page, state["height"])
    foreign, failed = requests_of(browser, server)
    problems = {
        "MathJax errors": state["mathErrors"],
        "raw math in the text": state["rawMath"],
        "requests to other hosts": sorted(set(foreign)),
        "files that do not load": sorted(set(failed)) + state["brokenImages"],
        "broken internal links": broken_links(state["links"], server, book_html),
        "wider than the window": ([f"{state['scrollWidth']} px > {state['clientWidth']} px"]
                                  if state["scrollWidth"] > state["clientWidth"] else []),
        "laid out otherwise in the screenshot": moved,
        "tables wider than the text column": state["wideTables"],
        "more than one search field": [f"{state['searchFields']} shown"] if state["searchFields"] > 1 else [],
        # text of book.STYLE's smallest size (9 pt at book.DPI) must be shown at 9 px or more
        "figure text below 9 px": [f"{f['src']}: {f['scale'] * MIN_TEXT_PX_AT_SCALE_1:.1f} px"
                                   for f in state["figures"] if f["scale"] * MIN_TEXT_PX_AT_SCALE_1 < 9],
    }
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"{page} (screenshot {shot}):\n" + json.dumps(problems, indent=1)
