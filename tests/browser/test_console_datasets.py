"""Datasets in the browser: the list, an old version's preview, upload with progress, errors, delete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Lakehouse, Tab

pytestmark = pytest.mark.e2e


def test_the_list_shows_rows_and_versions_and_an_old_version_previews(tab: Tab, lakehouse: Lakehouse) -> None:
    lakehouse.ingest("travel", b"id,city\n1,Oslo\n2,Lima\n")
    lakehouse.ingest("travel", b"id,city\n3,Quito\n")
    page = tab.open("datasets")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="travel", exact=True))
    # Name, rows, version, and the last update as a local date and time.
    expect(row.get_by_role("cell")).to_have_text(["travel", "3", "2", re.compile(r"\d{4}.*\d:\d\d")])
    row.get_by_role("link", name="travel").click()
    expect(page.get_by_role("heading", name="travel", level=2)).to_be_visible()
    schema = page.get_by_role("table", name="Schema of travel")
    expect(schema.get_by_role("row")).to_have_count(3)
    expect(schema.get_by_role("row").nth(2)).to_have_text("cityVARCHAR")
    # The current version previews first: all three rows.
    expect(page.get_by_role("heading", name="Preview of travel@2")).to_be_visible()
    preview = page.get_by_role("table", name="Preview of travel version 2")
    expect(preview.get_by_role("row")).to_have_count(4)
    # Time travel: version 1 had two rows, and no Quito.
    page.get_by_role("button", name="Preview version 1").click()
    old = page.get_by_role("table", name="Preview of travel version 1")
    expect(old.get_by_role("row")).to_have_count(3)
    expect(old).to_contain_text("Lima")
    expect(old).not_to_contain_text("Quito")


def test_an_upload_shows_progress_and_makes_a_new_version(
    tab: Tab, lakehouse: Lakehouse, tmp_path: Path
) -> None:
    lakehouse.ingest("uploads", b"id,score\n1,10\n")
    big = tmp_path / "more.csv"
    big.write_bytes(b"id,score\n" + b"".join(f"{i},{i % 97}\n".encode() for i in range(2, 50_000)))
    page = tab.open("datasets/uploads")
    expect(page.get_by_role("heading", name="Preview of uploads@1")).to_be_visible()
    expect(page.get_by_label("Dataset name")).to_have_value("uploads")
    page.get_by_label("Upload", exact=True).set_input_files(str(big))
    expect(page.get_by_role("status").filter(has_text="Version 2")).to_have_text(
        "Version 2 of uploads created: 49998 rows."
    )
    bar = page.get_by_role("progressbar", name="Upload progress")
    expect(bar).to_have_attribute("value", "100")
    assert int(bar.get_attribute("data-events") or 0) >= 1
    expect(page.get_by_role("heading", name="Preview of uploads@2")).to_be_visible()
    with lakehouse.api() as client:
        assert client.get("/v1/catalog/datasets/uploads").json()["row_count"] == 49_999
    # The same bytes again: no new version, and the page says so.
    page.get_by_label("Upload", exact=True).set_input_files(str(big))
    expect(page.get_by_role("status").filter(has_text="Already there")).to_have_text(
        "Already there: these bytes are version 2 of uploads; no new version."
    )


def test_schema_drift_is_shown_as_the_api_words_it(tab: Tab, lakehouse: Lakehouse, tmp_path: Path) -> None:
    lakehouse.ingest("drifting", b"id,name\n1,Ada\n")
    other = tmp_path / "other.csv"
    other.write_bytes(b"id,email\n2,bo@example.com\n")
    page = tab.open("datasets/drifting")
    expect(page.get_by_label("Dataset name")).to_have_value("drifting")
    page.get_by_label("Upload", exact=True).set_input_files(str(other))
    with lakehouse.api() as client:
        worded = client.post(
            "/v1/ingest/drifting", content=other.read_bytes(), headers={"Content-Type": "text/csv"}
        ).json()["error"]["message"]
    alert = page.get_by_role("alert").filter(has_text=worded)
    expect(alert).to_contain_text("added: email (VARCHAR)")
    expect(alert).to_contain_text("removed: name (VARCHAR)")


def test_an_admin_deletes_a_dataset(tab: Tab, lakehouse: Lakehouse) -> None:
    lakehouse.ingest("doomed", b"id\n1\n")
    page = tab.open("datasets/doomed")
    page.get_by_role("button", name="Delete dataset").click()
    page.get_by_role("button", name="Delete doomed for good").click()
    expect(page).to_have_url(f"{lakehouse.url}/#datasets")
    expect(page.get_by_role("heading", name="All datasets")).to_be_visible()
    expect(page.get_by_role("link", name="doomed", exact=True)).to_have_count(0)
    with lakehouse.api() as client:
        assert client.get("/v1/catalog/datasets/doomed").status_code == 404


def test_a_file_dropped_on_the_upload_panel_is_ingested(tab: Tab, lakehouse: Lakehouse) -> None:
    page = tab.open("datasets")
    page.get_by_label("Dataset name").fill("dropped")
    # What a drag from the desktop delivers: a DataTransfer holding the file, dropped on the panel.
    transfer = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["id,name\\n1,Ada\\n2,Bo\\n"], "people.csv", { type: "text/csv" }));
            return transfer;
        }"""
    )
    panel = page.get_by_role("region", name="Upload a file")
    panel.dispatch_event("dragover", {"dataTransfer": transfer})
    panel.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.get_by_role("status").filter(has_text="Version 1")).to_have_text(
        "Version 1 of dropped created: 2 rows."
    )
    expect(page.get_by_role("link", name="dropped", exact=True)).to_be_visible()
