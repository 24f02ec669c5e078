"""Which scope each route needs: a small table of method + path templates.

    OPEN   no token needed: /health, the console, the OpenAPI document and /docs
    READ   every GET and HEAD, SQL, search, embeddings, chat, ask, Iceberg reads
    WRITE  storage PUT/DELETE, ingest, register, index create/add/delete/sync, Iceberg commits
    ADMIN  deleting and expiring datasets, deleting indexes, dropping Iceberg tables

Each scope includes the ones before it. A path is split into segments and
matched against templates, segment by segment (`{name}` matches one non-empty
segment, `{rest*}` one or more), never by substring. A request no template
names needs a token (`read` for GET and HEAD, `admin` for anything else, so a
route missing from the table fails closed), so probing without a token
answers 401 and reveals no route. The console is `GET /` and everything under `/console/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Scope(IntEnum):
    """What a token may do; each includes the ones before it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The scope's name as tokens and errors spell it: read, write or admin."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`read`, `write` or `admin` as a Scope.

        Raises:
            ValueError: any other text.
        """
        for scope in cls:
            if scope.label == text:
                return scope
        raise ValueError(f"unknown scope {text!r}; choose read, write or admin")


# None: open, no token needed.
Need = Scope | None
OPEN: Need = None
READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN


@dataclass(frozen=True)
class Rule:
    """Requests of `methods` whose path matches `template` need `need`."""

    methods: frozenset[str]
    template: tuple[str, ...]
    need: Need


def _rule(methods: str, template: str, need: Need) -> Rule:
    parts = tuple(part for part in template.split("/") if part)
    return Rule(frozenset(methods.split()), parts, need)


# HEAD is decided as GET. First match wins, so specific templates come first.
RULES: tuple[Rule, ...] = (
    # Open: liveness, the console, the API's own description.
    _rule("GET", "/health", OPEN),
    _rule("GET", "/", OPEN),
    _rule("GET", "/console/{rest*}", OPEN),
    _rule("GET", "/openapi.json", OPEN),
    _rule("GET", "/docs", OPEN),
    _rule("GET", "/docs/{rest*}", OPEN),
    # Process metrics are not public.
    _rule("GET", "/metrics", READ),
    # Storage.
    _rule("GET", "/v1/storage/objects", READ),
    _rule("GET", "/v1/storage/objects/{key*}", READ),
    _rule("PUT DELETE", "/v1/storage/objects/{key*}", WRITE),
    # Catalog.
    _rule("POST", "/v1/catalog/register", WRITE),
    _rule("GET", "/v1/catalog/datasets", READ),
    _rule("GET", "/v1/catalog/datasets/{name}", READ),
    _rule("DELETE", "/v1/catalog/datasets/{name}", ADMIN),
    _rule("GET", "/v1/catalog/datasets/{name}/versions", READ),
    _rule("POST", "/v1/catalog/datasets/{name}/expire", ADMIN),
    # Ingest.
    _rule("POST", "/v1/ingest/{name}", WRITE),
    # SQL, embeddings, ask.
    _rule("POST", "/v1/sql", READ),
    _rule("POST", "/v1/embed", READ),
    _rule("POST", "/v1/embeddings", READ),
    _rule("POST", "/v1/ask", READ),
    # Vectors.
    _rule("GET", "/v1/vectors/index", READ),
    _rule("POST", "/v1/vectors/index", WRITE),
    _rule("GET", "/v1/vectors/index/{name}", READ),
    _rule("DELETE", "/v1/vectors/index/{name}", ADMIN),
    _rule("POST", "/v1/vectors/index/{name}/search", READ),
    _rule("POST", "/v1/vectors/index/{name}/add", WRITE),
    _rule("POST", "/v1/vectors/index/{name}/sync", WRITE),
    # Item ids may hold "/" (the route takes the rest of the path), so the rule does too.
    _rule("DELETE", "/v1/vectors/index/{name}/items/{item_id*}", WRITE),
    # Chat and the OpenAI-shaped routes.
    _rule("GET", "/v1/chat/providers", READ),
    _rule("POST", "/v1/chat", READ),
    _rule("POST", "/v1/chat/completions", READ),
    _rule("GET", "/v1/models", READ),
    _rule("GET", "/v1/models/{id*}", READ),  # ids hold "/" (openrouter/<v>/<m>)
    # Iceberg REST catalog: reads, scan metrics reports, commits, drops.
    _rule("GET", "/iceberg/{rest*}", READ),
    _rule("POST", "/iceberg/v1/namespaces/{ns}/tables/{table}/metrics", READ),
    _rule("POST", "/iceberg/v1/{prefix}/namespaces/{ns}/tables/{table}/metrics", READ),
    _rule("POST", "/iceberg/{rest*}", WRITE),
    _rule("DELETE", "/iceberg/{rest*}", ADMIN),
)

# What a request no rule names needs: a token, so that unknown paths are not a map; and for
# anything but a read, the most there is, so a route left out of the table fails closed.
DEFAULT_READ: Scope = READ
DEFAULT_CHANGE: Scope = ADMIN


def _matches(template: tuple[str, ...], segments: list[str]) -> bool:
    if template and template[-1].endswith("*}"):
        fixed = template[:-1]
        if len(segments) <= len(fixed):
            return False
    elif len(segments) != len(template):
        return False
    else:
        fixed = template
    for want, got in zip(fixed, segments, strict=False):
        if want.startswith("{"):
            if not got:
                return False
        elif want != got:
            return False
    return True


def rule_for(method: str, path: str) -> Rule | None:
    """The first rule naming `method` and `path`, or None."""
    method = "GET" if method == "HEAD" else method
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    if segments == [""]:
        segments = []
    for rule in RULES:
        if method in rule.methods and _matches(rule.template, segments):
            return rule
    return None


def required_scope(method: str, path: str) -> Need:
    """The scope a request needs (None: open), by its method and decoded path."""
    rule = rule_for(method, path)
    if rule is not None:
        return rule.need
    return DEFAULT_READ if method in ("GET", "HEAD") else DEFAULT_CHANGE
