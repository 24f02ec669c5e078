"""The web console's speed and weight, in Debian's Chromium under Playwright.

    .venv/bin/python bench/console.py [--repeat 5]

Starts a real `lakehouse serve`, ingests a 10,000-row dataset, then in a fresh
browser context each time: loads `/` and takes the first contentful paint and
the time until the datasets table shows (target < 500 ms); opens the SQL page,
runs `SELECT * FROM big` (10,000 rows; the page shows the first 100 and pages
on) and takes the time from the Run click until the result table shows
(target < 1.5 s). Prints the medians, and the page weight of `/` with every
asset it loads, gzipped (target < 300 KB). Without /usr/bin/chromium it says
how to install it and exits 0.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.procs import LakehouseProcess, write_config

from lakehouse.console.assets import assets

ROWS = 10_000
# Milliseconds since navigation until `selector` is in the page (checked each frame).
SHOWN = """async (selector) => {
  while (!document.querySelector(selector)) await new Promise((r) => requestAnimationFrame(r));
  return performance.now();
}"""
# Milliseconds from clicking Run until the result table is in the page and painted.
RUN_SQL = """async () => {
  const run = [...document.querySelectorAll("button")].find((b) => b.textContent === "Run");
  const started = performance.now();
  run.click();
  while (!document.querySelector(".result table")) await new Promise((r) => requestAnimationFrame(r));
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - started;
}"""


def main() -> None:
    """Run the measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    weight = sum(len(gzip.compress(a.body, 6)) for a in assets().values())
    print(f"page weight of / with all its assets, gzipped: {weight / 1024:.1f} KB (target < 300 KB)")
    if not CHROMIUM.exists():
        print("no /usr/bin/chromium: run `apt-get install chromium` to time the console")
        return
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}})
        proc = LakehouseProcess(config).start()
        try:
            csv = "id,name,score\n" + "".join(f"{i},name {i},{i % 100}\n" for i in range(ROWS))
            answer = httpx.post(
                f"{proc.url}/v1/ingest/big", content=csv, headers={"Content-Type": "text/csv"}, timeout=60
            )
            answer.raise_for_status()
            paints: list[float] = []
            shown: list[float] = []
            sql: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    for _ in range(args.repeat):
                        context = browser.new_context(viewport={"width": 1280, "height": 800})
                        page = context.new_page()
                        page.goto(f"{proc.url}/")
                        # Timed in the page, frame by frame: no test-side polling in the figure.
                        shown.append(page.evaluate(SHOWN, "table.list"))
                        paints.append(
                            page.evaluate(
                                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN"
                            )
                        )
                        page.get_by_role("navigation").get_by_role("link", name="SQL").click()
                        page.get_by_label("SQL", exact=True).fill("SELECT * FROM big")
                        sql.append(page.evaluate(RUN_SQL))
                        table = page.get_by_role("table", name="Query result")
                        expect(table.get_by_role("row")).to_have_count(101)
                        context.close()
                finally:
                    browser.close()
        finally:
            proc.stop()
    print(f"/ first contentful paint, median of {args.repeat}: {statistics.median(paints):.0f} ms")
    print(f"/ until the datasets table shows: {statistics.median(shown):.0f} ms (target < 500 ms)")
    print(
        f"SQL page, {ROWS:,}-row result, Run click until the table shows: "
        f"{statistics.median(sql):.0f} ms (target < 1.5 s)"
    )


if __name__ == "__main__":
    main()
