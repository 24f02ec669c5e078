"""A deterministic staffing data set: candidates, jobs and placements as CSV.

The same (table, rows, seed, start) always gives the same bytes. Values cover
what CSV ingest must get right: ISO dates and timestamps, two-decimal money,
empty fields (nulls), quoted fields holding commas and doubled quotes, and
UTF-8 names. `start` offsets the ids so a second batch appends cleanly.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Eun-ji",
    "François",
    "Grace",
    "Hiroshi",
    "Ingrid",
    "José",
    "Kwame",
    "Łucja",
    "Mónica",
    "Nguyễn",
    "Olu",
    "Priya",
    "Quentin",
    "Renée",
    "Søren",
    "Zoë",
]
LAST = [
    "Álvarez",
    "Brown",
    "Çelik",
    "Dubois",
    "Eriksson",
    "Fischer",
    "García",
    "Hernández",
    "Ivanov",
    "Jäger",
    "Kowalski",
    "López",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Petrović",
    "Quinn",
    "Rossi",
    "Søndergaard",
    "Wu",
]
CITIES = [
    "Berlin",
    "São Paulo",
    "Zürich",
    "Kraków",
    "Montréal",
    "Reykjavík",
    "Osaka",
    "Lagos",
    "Austin",
    "Lyon",
]
SKILLS = ["forklift", "welding", "SQL", "nursing", "payroll", "C++", "logistics", "Excel", "HVAC", "sales"]
TITLES = [
    "Warehouse associate",
    "Staff nurse",
    "Data analyst",
    "Welder, MIG/TIG",
    "Payroll clerk",
    'Site lead "night"',
    "HVAC technician",
    "Account manager",
    "Forklift driver",
    "Line cook",
]
CLIENTS = ["Acme, Inc.", "Globex", "Initech", "Umbrella Logistics", "Stark & Sons", "Wayne Health"]
LANGS = ["English", "Español", "Deutsch", "Français", "日本語", "Português", "Polski"]
EPOCH = date(2020, 1, 1)

COLUMNS: dict[str, list[str]] = {
    "candidates": ["candidate_id", "full_name", "email", "city", "hourly_rate", "available_from", "notes"],
    "jobs": ["job_id", "title", "client", "city", "bill_rate", "opened_on", "is_filled"],
    "placements": ["placement_id", "candidate_id", "job_id", "start_date", "end_date", "margin", "placed_at"],
}


def _money(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.randint(low * 100, high * 100) / 100:.2f}"


def _day(rng: random.Random, span: int = 1500) -> date:
    return EPOCH + timedelta(days=rng.randrange(span))


def _candidate(rng: random.Random, i: int) -> list[object]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    skills = ", ".join(rng.sample(SKILLS, rng.randint(1, 3)))
    history = f"previously with {rng.choice(CLIENTS)} in {rng.choice(CITIES)} for {rng.randint(1, 60)} months"
    notes = (
        ""
        if rng.random() < 0.2
        else f'Skills: {skills}; said "available soon", ref #{rng.randrange(10**6)}; {history}; '
        f"prefers {rng.choice(['day', 'night', 'weekend'])} shifts, speaks {rng.choice(LANGS)}"
    )
    email = "" if rng.random() < 0.1 else f"cand{i}@example.org"
    return [
        i,
        f"{first} {last}",
        email,
        rng.choice(CITIES),
        _money(rng, 15, 95),
        _day(rng).isoformat(),
        notes,
    ]


def _job(rng: random.Random, i: int) -> list[object]:
    return [
        i,
        rng.choice(TITLES),
        rng.choice(CLIENTS),
        rng.choice(CITIES),
        _money(rng, 25, 180),
        _day(rng).isoformat(),
        rng.choice(["true", "false"]),
    ]


def _placement(rng: random.Random, i: int) -> list[object]:
    start = _day(rng)
    end = "" if rng.random() < 0.3 else (start + timedelta(days=rng.randint(7, 365))).isoformat()
    placed = datetime.combine(start, datetime.min.time()) - timedelta(minutes=rng.randrange(60 * 24 * 30))
    return [
        i,
        rng.randrange(1, 5000),
        rng.randrange(1, 500),
        start.isoformat(),
        end,
        _money(rng, -20, 60),
        placed.isoformat(sep=" "),
    ]


ROWS: dict[str, Callable[[random.Random, int], list[object]]] = {
    "candidates": _candidate,
    "jobs": _job,
    "placements": _placement,
}


def rows(table: str, count: int, seed: int = 7, start: int = 1) -> Iterator[list[object]]:
    """`count` rows of `table`, ids from `start`."""
    make = ROWS[table]
    rng = random.Random(f"{table}:{seed}:{start}")
    for i in range(start, start + count):
        yield make(rng, i)


def csv_bytes(table: str, count: int, seed: int = 7, start: int = 1) -> bytes:
    """The table as CSV bytes (header first), for small sets."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS[table])
    writer.writerows(rows(table, count, seed, start))
    return out.getvalue().encode("utf-8")


def write_csv(path: Path, table: str, count: int, seed: int = 7, start: int = 1) -> Path:
    """Write the table as a CSV file, streaming (fine for millions of rows)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS[table])
        writer.writerows(rows(table, count, seed, start))
    return path
