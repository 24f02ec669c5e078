"""The SQL page: results with column types, DuckDB's errors, charts, CSV, paging past the cap, versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Lakehouse, Tab

CITIES = b"city,people\nOslo,3\nLima,5\nQuito,2\nOslo,4\n"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def cities(lakehouse: Lakehouse) -> None:
    """A dataset the module's queries read."""
    lakehouse.ingest("sql_cities", CITIES, mode="replace")


def run(tab: Tab, sql: str) -> None:
    """Type `sql` in the SQL box and run it with Ctrl+Enter."""
    box = tab.page.get_by_label("SQL", exact=True)
    box.fill(sql)
    box.press("Control+Enter")


def test_a_result_shows_as_a_table_with_column_types_and_a_chart(tab: Tab) -> None:
    page = tab.open("sql")
    run(tab, "SELECT city, sum(people) AS total FROM sql_cities GROUP BY city ORDER BY city")
    table = page.get_by_role("table", name="Query result")
    expect(table.get_by_role("columnheader")).to_have_text(["cityVARCHAR", "totalHUGEINT"])
    expect(table.get_by_role("row")).to_have_count(4)
    expect(table.get_by_role("row").nth(1)).to_have_text("Lima5")
    # Text by number: bars, one per row.
    kind = page.get_by_label("Chart type")
    expect(kind).to_have_value("bar")
    chart = page.get_by_role("img", name="Bar chart of total by city")
    expect(chart.locator("rect.mark")).to_have_count(3)
    expect(chart.locator("rect.mark title").first).to_have_text("city: Lima, total: 5")
    kind.select_option("line")
    line = page.get_by_role("img", name="Line chart of total by city")
    expect(line.locator("path.line")).to_have_count(1)
    expect(line.locator("circle.mark")).to_have_count(3)
    tab.shot("sql-bar-result")
    # Two numbers: a scatter.
    run(tab, "SELECT range AS x, range * range AS y FROM range(10)")
    expect(page.get_by_label("Chart type")).to_have_value("scatter")
    expect(page.get_by_role("img", name="Scatter chart of y by x").locator("circle.mark")).to_have_count(10)


def test_duckdbs_error_shows_inline(tab: Tab, lakehouse: Lakehouse) -> None:
    bad = "SELECT nope FROM sql_cities"
    with lakehouse.api() as client:
        answer = client.post("/v1/sql", json={"sql": bad})
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    page = tab.open("sql")
    run(tab, bad)
    expect(page.get_by_role("alert")).to_have_text(message)
    expect(page.get_by_role("table", name="Query result")).to_have_count(0)
    # Fixing it clears the error.
    run(tab, "SELECT city FROM sql_cities LIMIT 1")
    expect(page.get_by_role("table", name="Query result")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_hidden()


def test_csv_download_holds_the_result(tab: Tab) -> None:
    page = tab.open("sql")
    run(tab, "SELECT city, people, 'say \"hi\", ok' AS note FROM sql_cities ORDER BY people")
    expect(page.get_by_role("table", name="Query result")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == "result.csv"
    text = Path(download.path()).read_text()
    assert text.splitlines() == [
        "city,people,note",
        'Quito,2,"say ""hi"", ok"',
        'Oslo,3,"say ""hi"", ok"',
        'Oslo,4,"say ""hi"", ok"',
        'Lima,5,"say ""hi"", ok"',
    ]


def test_paging_goes_past_the_row_cap(tab: Tab) -> None:
    page = tab.open("sql")
    run(tab, "SELECT range AS i FROM range(400)")  # the server's cap is 250 rows
    state = page.get_by_role("status").filter(has_text="Rows")
    expect(state).to_contain_text("Rows 1 to 100 (more follow)")
    for first, last in ((101, 200), (201, 300), (301, 400)):
        page.get_by_role("button", name="Next page").click()
        expect(state).to_contain_text(f"Rows {first} to {last}")
    expect(page.get_by_role("table", name="Query result").get_by_role("cell").first).to_have_text("300")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(state).to_contain_text("Rows 201 to 300 (more follow)")


def test_the_version_picker_pins_a_dataset_and_queries_are_kept(tab: Tab, lakehouse: Lakehouse) -> None:
    lakehouse.ingest("sql_versions", b"id\n1\n2\n")
    lakehouse.ingest("sql_versions", b"id\n3\n")
    page = tab.open("sql")
    box = page.get_by_label("SQL", exact=True)
    box.fill("SELECT count(*) AS n FROM sql_versions WHERE 'sql_versions' <> ''")
    page.get_by_label("Dataset", exact=True).select_option("sql_versions")
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_role("button", name="Use version").click()
    expect(box).to_have_value("SELECT count(*) AS n FROM \"sql_versions@1\" WHERE 'sql_versions' <> ''")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_role("table", name="Query result").get_by_role("cell")).to_have_text(["2"])
    # The last queries survive a reload.
    page.reload()
    expect(page.get_by_label("SQL", exact=True)).to_have_value(
        "SELECT count(*) AS n FROM \"sql_versions@1\" WHERE 'sql_versions' <> ''"
    )
    expect(page.get_by_label("Recent queries").locator("option")).to_have_count(2)
