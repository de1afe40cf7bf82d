"""The figures and report screenshots in docs/screenshots, made from real runs.

    python benchmarks/screenshots.py --prefix digits RUN_DIR [RUN_DIR ...]

The first run gives the front plot, the layer map, the convergence and the report (a full-page screenshot in
headless Chromium, and one of the selected-policy part after a click on another point); with several runs, the
comparison figure of all of them. Needs Debian's chromium and playwright (the test extra).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def qevo(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "qevo_cli", *arguments], check=True, stdout=subprocess.DEVNULL)


def screenshot_report(report: Path, out: Path, prefix: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]")
        page.screenshot(path=str(out / f"{prefix}-report.png"), full_page=True)
        # another policy selected: the part of the page that shows it
        dots = page.locator("#scatter circle.point")
        dots.nth(dots.count() - 1).dispatch_event("click")
        page.locator("#chosen").screenshot(path=str(out / f"{prefix}-report-selected.png"))
        browser.close()
    if errors:
        raise SystemExit(f"{report}: the page reported errors: {errors}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--pick", default="max-drop=1,min=latency", help="the rule the comparison applies")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run, out, prefix = str(args.runs[0]), args.out, args.prefix
    qevo("pareto", "show", run, "--plot", str(out / f"{prefix}-front.png"),
         "--layers-png", str(out / f"{prefix}-layers.png"), "--convergence-png", str(out / f"{prefix}-convergence.png"))
    if len(args.runs) > 1:
        qevo("pareto", "compare", *map(str, args.runs), "--pick", args.pick, "--png", str(out / f"{prefix}-compare.png"))
    report = out / f"{prefix}-report.html"
    qevo("report", run, "-o", str(report))
    screenshot_report(report, out, prefix)
    report.unlink()   # the screenshots are what docs/ keeps; the page is one command away
    print("\n".join(sorted(str(p) for p in out.glob(f"{prefix}-*.png"))))


if __name__ == "__main__":
    main()
