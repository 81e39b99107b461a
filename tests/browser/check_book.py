"""Load every page of the built book in headless Chromium, from disk, with the network off.

    python tests/browser/check_book.py [_build/html]

For each page it checks that
- no request leaves the machine: every request that is not for a local file is aborted and counted;
- every local file the page asks for exists (scripts, styles, fonts, images);
- the console shows no error and no script throws;
- MathJax typeset every formula (each Sphinx math element holds MathJax output, none is a TeX error)
  and no raw TeX delimiter, \\( \\) \\[ \\] or $$, is left in the text;
- every saved widget renders to DOM controls or outputs;
- every local link and image resolves (the file exists; a #fragment names an element of that page);
- no script, style sheet or image is loaded from a remote address;
- the page (its HTML document, with the saved widget state in it) stays under 2 MB;
- exercises and solutions (sphinx-exercise, book/exercises.md) render as their admonitions, and every
  solution's body is hidden until its toggle is clicked and shown after; the convention page,
  book/exercises.html, must have at least one of each.
It also notes pages whose HTML and own images together pass 2 MB, and lists the figures shown at less than 65% of their size (labels drawn at 10 pt, 100 dpi are then
below 9 px) as a note. Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM), driven by Playwright.
The last line reads "browser: N passed, M failed", counting pages. This file is not collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_PAGE_BYTES = 2 * 1024 * 1024
MIN_FIGURE_SCALE = 0.65
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# Runs in the page once it has loaded: everything the checks need, as plain data.
INSPECT = r"""
async () => {
  const out = {};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const maths = Array.from(document.querySelectorAll('.math'));
  out.math = maths.length;
  out.mathTypeset = maths.filter(m => m.querySelector('mjx-container')).length;
  out.mathJaxOutputs = document.querySelectorAll('mjx-container').length;
  out.texErrors = Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80));

  // raw TeX left in the text (code, scripts and MathJax's own output aside)
  const skip = 'script, style, pre, code, textarea, mjx-container, .highlight, .output';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  out.rawTex = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    const m = n.textContent.match(/\\\(|\\\)|\\\[|\\\]|\$\$/);
    if (m) out.rawTex.push(n.textContent.trim().slice(0, 80));
  }

  // widgets: each saved view is replaced by a .widget-subarea holding the rendered widget
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  out.widgetViews = views.length;
  out.widgetsRendered = 0; out.widgetControls = 0; out.widgetOutputs = 0;
  for (const v of views) {
    const area = v.previousElementSibling;
    if (!area || !area.classList.contains('widget-subarea')) continue;
    const controls = area.querySelectorAll('input, select, button, textarea, .widget-slider, .widget-dropdown').length;
    const outputs = area.querySelectorAll('.jp-OutputArea-output, img, svg').length;
    if (controls + outputs > 0) out.widgetsRendered += 1;
    out.widgetControls += controls; out.widgetOutputs += outputs;
  }

  out.links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  out.images = Array.from(document.querySelectorAll('img')).map(i => ({
    src: i.currentSrc || i.src, loaded: i.complete && i.naturalWidth > 0, lazy: i.loading === 'lazy',
    shown: i.getBoundingClientRect().width, natural: i.naturalWidth,
    figure: !!i.closest('.cell_output, figure, .output')}));
  out.remoteAssets = Array.from(document.querySelectorAll(
      'script[src], link[rel~="stylesheet"][href], link[rel~="preload"][href], img[src], iframe[src], source[src]'))
    .map(e => e.src || e.href).filter(u => /^(https?:)?\/\//.test(u));
  out.ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
  return out;
}
"""

WAIT_FOR_WIDGETS = r"""
() => Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
  .every(v => v.previousElementSibling && v.previousElementSibling.classList.contains('widget-subarea')
              && v.previousElementSibling.children.length > 0)
"""


# the pages that must show at least one exercise and one solution (relative to the built book)
EXERCISE_PAGES = {"book/exercises.html"}


def check_exercises(page, name: str) -> tuple[list[str], int]:
    """Exercises and solutions render, and each solution stays collapsed until its toggle is clicked."""
    problems = []
    exercises = page.locator("div.exercise.admonition")
    solutions = page.locator("div.solution.admonition")
    n_ex, n_sol = exercises.count(), solutions.count()
    if name in EXERCISE_PAGES and not (n_ex and n_sol):
        problems.append(f"exercises: {n_ex} exercises and {n_sol} solutions rendered, expected both")
    for i in range(n_ex):
        if not exercises.nth(i).locator(":scope > .admonition-title").is_visible():
            problems.append(f"exercises: exercise {i + 1} shows no title")
    for i in range(n_sol):
        solution = solutions.nth(i)
        title = solution.locator(":scope > .admonition-title").inner_text().strip() or f"solution {i + 1}"
        body = solution.locator(":scope > :not(.admonition-title)")
        if not body.count():
            problems.append(f"exercises: {title!r} has no body")
            continue
        shown = [j for j in range(body.count()) if body.nth(j).is_visible()]
        if shown:
            problems.append(f"exercises: {title!r} is not collapsed before its toggle is clicked")
            continue
        button = solution.locator(":scope > .admonition-title .toggle-button")
        if not button.count():
            problems.append(f"exercises: {title!r} has no toggle button (is it :class: dropdown?)")
            continue
        button.first.click()
        try:
            body.first.wait_for(state="visible", timeout=5_000)
        except Exception:
            problems.append(f"exercises: {title!r} stays hidden after its toggle is clicked")
    return problems, n_ex + n_sol


def ids_in(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        cache[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))
    return cache[path]


def local_path(url: str) -> tuple[Path, str]:
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    if path.is_dir():
        path = path / "index.html"
    return path, unquote(parts.fragment)


def check_page(page, path: Path, root: Path, id_cache: dict) -> tuple[list[str], dict]:
    problems: list[str] = []
    events = {"remote": [], "missing": [], "console": []}

    def on_request_failed(request):
        if request.url.startswith("file:"):
            events["missing"].append(f"{request.url} ({request.failure})")

    page.on("requestfailed", on_request_failed)
    page.on("console", lambda m: m.type == "error" and events["console"].append(m.text[:200]))
    page.on("pageerror", lambda e: events["console"].append(f"uncaught: {str(e)[:200]}"))
    redirect = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', path.read_text(), re.I)
    if redirect:  # the root index.html only forwards to the first page
        target = (path.parent / redirect.group(1)).resolve()
        return ([] if target.exists() else [f"redirect to a missing page: {redirect.group(1)}"]), \
            {"math": 0, "widgets": 0, "views": 0, "controls": 0, "outputs": 0, "html": path.stat().st_size,
             "bytes": path.stat().st_size, "small": [], "links": 0, "images": 0, "exercises": 0}
    page.goto(path.as_uri(), wait_until="load")
    try:
        page.wait_for_function(WAIT_FOR_WIDGETS, timeout=30_000)
    except Exception:
        problems.append("widgets: not every saved widget rendered within 30 s")
    info = page.evaluate(INSPECT)
    exercise_problems, exercise_items = check_exercises(page, str(path.relative_to(root)))
    page.wait_for_timeout(200)  # let late console messages arrive
    page.remove_listener("requestfailed", on_request_failed)

    if info["math"] != info["mathTypeset"]:
        problems.append(f"math: {info['math'] - info['mathTypeset']} of {info['math']} formulas not typeset")
    if info["texErrors"]:
        problems.append(f"math: TeX errors {info['texErrors'][:3]}")
    if info["rawTex"]:
        problems.append(f"math: raw TeX left in the text, e.g. {info['rawTex'][:3]}")
    if info["widgetViews"] != info["widgetsRendered"]:
        problems.append(f"widgets: {info['widgetViews'] - info['widgetsRendered']} of {info['widgetViews']} "
                        "saved widgets have no controls or outputs")
    problems += exercise_problems
    for text in events["console"]:
        problems.append(f"console: {text}")
    for url in events["missing"]:
        problems.append(f"missing file: {url}")
    for url in sorted(set(info["remoteAssets"])):
        problems.append(f"remote asset: {url}")

    for url in sorted(set(info["links"])):
        if not url.startswith("file:"):
            continue
        target, fragment = local_path(url)
        if not target.exists():
            problems.append(f"broken link: {url}")
        elif fragment and target.suffix == ".html":
            ids = set(info["ids"]) if target == path else ids_in(target, id_cache)
            if fragment not in ids:
                problems.append(f"broken anchor: {url}")

    own_images, small = set(), []
    for img in info["images"]:
        src = img["src"]
        if src.startswith("data:"):
            continue
        if not src.startswith("file:"):
            problems.append(f"remote image: {src}")
            continue
        target, _ = local_path(src)
        if not target.exists():
            problems.append(f"missing image: {src}")
            continue
        if not img["loaded"] and not img["lazy"]:
            problems.append(f"image did not load: {src}")
        own_images.add(target)
        if img["figure"] and img["natural"] and img["shown"] / img["natural"] < MIN_FIGURE_SCALE:
            small.append((target.name, img["shown"] / img["natural"]))

    html_bytes = path.stat().st_size
    page_bytes = html_bytes + sum(p.stat().st_size for p in own_images if "_static" not in p.parts)
    if html_bytes > MAX_PAGE_BYTES:
        problems.append(f"size: the HTML is {html_bytes / 2**20:.2f} MB, over 2 MB")
    stats = {"math": info["mathJaxOutputs"], "widgets": info["widgetsRendered"], "views": info["widgetViews"],
             "controls": info["widgetControls"], "outputs": info["widgetOutputs"],
             "html": html_bytes, "bytes": page_bytes, "small": small,
             "links": len(info["links"]), "images": len(info["images"]), "exercises": exercise_items}
    return problems, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book (default _build/html)")
    args = parser.parse_args()
    root = Path(args.html).resolve()
    pages = sorted(p for p in root.rglob("*.html")
                   if not {"_static", "_sources", "_images", "js"} & set(p.relative_to(root).parts))
    if not pages:
        print(f"no pages under {root}: build the book first (bash book/build.sh)")
        return 1
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")

    start = time.time()
    failed, remote, id_cache = 0, [], {}
    totals = {"math": 0, "widgets": 0, "controls": 0, "outputs": 0, "exercises": 0}
    small_figures, heavy = [], []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900}, service_workers="block")

        def offline(route):
            url = route.request.url
            if url.startswith(LOCAL_SCHEMES):
                route.continue_()
            else:
                remote.append(url)
                route.abort("internetdisconnected")

        context.route("**/*", offline)
        context.on("websocket", lambda ws: remote.append(ws.url))
        print(f"{'page':<48} {'math':>5} {'widgets':>8} {'HTML KB':>8} {'page KB':>8}  result")
        for path in pages:
            page = context.new_page()
            before = len(remote)
            try:
                problems, stats = check_page(page, path, root, id_cache)
            except Exception as err:  # a page that cannot be inspected fails, the others still run
                problems, stats = [f"could not check the page: {err}"], None
            finally:
                page.close()
            problems += [f"network request: {url}" for url in remote[before:]]
            name = str(path.relative_to(root))
            if stats:
                for key in totals:
                    totals[key] += stats[key]
                small_figures += [(name, *s) for s in stats["small"]]
                if stats["bytes"] > MAX_PAGE_BYTES:
                    heavy.append((name, stats["bytes"]))
                widgets = f"{stats['widgets']}/{stats['views']}" if stats["views"] else "-"
                print(f"{name:<48} {stats['math']:>5} {widgets:>8} {stats['html'] / 1024:>8.0f} "
                      f"{stats['bytes'] / 1024:>8.0f}  {'FAIL' if problems else 'ok'}")
            else:
                print(f"{name:<48} {'':>5} {'':>8} {'':>8} {'':>8}  FAIL")
            for problem in problems:
                print(f"    - {problem}")
            failed += bool(problems)
        context.close()

    print(f"\n{len(pages)} pages in {time.time() - start:.1f} s: {totals['math']} formulas typeset, "
          f"{totals['widgets']} widgets rendered ({totals['controls']} controls, {totals['outputs']} outputs), "
          f"{totals['exercises']} exercises and solutions rendered, {len(remote)} network requests blocked")
    for name, size in heavy:
        print(f"note: {name} weighs {size / 2**20:.2f} MB with its images (its figures are wider than shown)")
    if small_figures:
        print(f"note: {len(small_figures)} figures shown below {MIN_FIGURE_SCALE:.0%} of their size "
              "(labels under 9 px; the notebook should draw them narrower):")
        for name, image, scale in small_figures:
            print(f"    {name}: {image} at {scale:.1%}")
    print(f"browser: {len(pages) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
