"""catalogd routes: register dataset versions, read manifests and histories, delete datasets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from lakehouse.catalog import Column, Manifest, ObjectSpec
from lakehouse.catalog.manifest import MAX_COLUMNS, MAX_OBJECTS
from lakehouse.services import iceberg
from lakehouse.services.deps import Deps, DepsDep

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])
# The largest page of a listing.
MAX_PAGE = 1000


class ColumnBody(BaseModel):
    """One column: its name and DuckDB type."""

    name: StrictStr = Field(min_length=1)
    type: StrictStr = Field(min_length=1)


class ObjectBody(BaseModel):
    """One data file of a version; `size` is optional (the server reads it; a wrong one is 400)."""

    key: StrictStr
    size: StrictInt | None = Field(default=None, ge=0)
    rows: StrictInt = Field(ge=0)


class ObjectOut(BaseModel):
    """One data file of a stored version."""

    key: str
    size: int
    rows: int


class RegisterRequest(BaseModel):
    """A version to register; the fingerprint is computed when absent."""

    model_config = ConfigDict(populate_by_name=True)

    name: StrictStr
    columns: list[ColumnBody] = Field(alias="schema", max_length=MAX_COLUMNS)
    objects: list[ObjectBody] = Field(max_length=MAX_OBJECTS)
    row_count: StrictInt = Field(ge=0)
    fingerprint: StrictStr | None = Field(default=None, min_length=1)
    extra: dict[str, Any] | None = None
    parent_version: StrictInt | None = Field(
        default=None,
        ge=0,
        description=(
            "Compare-and-set: register only if the dataset's current version is still this one "
            "(0: only if the dataset does not exist yet); otherwise 409 version_conflict and "
            "nothing is written. Same content as the current version still answers 200."
        ),
    )


class ManifestOut(BaseModel):
    """One immutable version of a dataset."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    version: int
    columns: list[ColumnBody] = Field(alias="schema")
    objects: list[ObjectOut]
    row_count: int
    fingerprint: str
    created_at: str
    parent_version: int | None
    extra: dict[str, Any] = Field(default_factory=dict)
    problems: list[str] = Field(
        default_factory=list,
        description="Why this stored version is not trusted (e.g. a column type that does not validate).",
    )
    snapshot_id: int | None = Field(
        default=None, description="The Apache Iceberg snapshot that is this version."
    )
    metadata_location: str | None = Field(
        default=None,
        description="The Iceberg table metadata file holding this version (for iceberg_scan and the like).",
    )

    @classmethod
    def of(cls, manifest: Manifest, deps: Deps) -> ManifestOut:
        """The public form of a stored manifest."""
        fields = manifest.to_dict()
        key = fields.pop("metadata_key", None)
        location = deps.catalog.warehouse.uri(key) if key else None
        return cls.model_validate(
            {**fields, "problems": list(manifest.problems), "metadata_location": location}
        )


class DatasetSummary(BaseModel):
    """A dataset's current version, as listed."""

    name: str
    version: int
    row_count: int
    updated_at: str


class DatasetList(BaseModel):
    """Every dataset's current version."""

    datasets: list[DatasetSummary]
    next: str | None = Field(default=None, description="The `after` of the next page; null on the last.")


class VersionSummary(BaseModel):
    """One entry of a dataset's history."""

    version: int
    row_count: int
    fingerprint: str
    created_at: str
    parent_version: int | None
    snapshot_id: int | None = None


class VersionList(BaseModel):
    """A dataset's history, oldest first."""

    versions: list[VersionSummary]
    next: int | None = Field(default=None, description="The `after` of the next page; null on the last.")


class ExpireRequest(BaseModel):
    """Which versions to expire: all but the last `keep_last`, or those created before `older_than`."""

    model_config = ConfigDict(extra="forbid")

    keep_last: StrictInt | None = Field(default=None, ge=1)
    older_than: datetime | None = Field(default=None, description="ISO 8601; a time without a zone is UTC.")


class ExpireResult(BaseModel):
    """The versions removed and the bytes their files held."""

    expired: list[int]
    bytes_freed: int


@router.post(
    "/register",
    status_code=201,
    response_model=ManifestOut,
    response_model_by_alias=True,
    summary="Register a dataset version (201 new, 200 same content again)",
    responses={
        200: {"description": "Same content as the current version; nothing new was written"},
        409: {"description": "schema_drift, or version_conflict when parent_version is not current"},
    },
)
async def register(body: RegisterRequest, response: Response, deps: DepsDep) -> ManifestOut:
    """Add a version, or return the current one when its content is the same."""
    manifest, created = await deps.catalog.register(
        body.name,
        [Column(c.name, c.type) for c in body.columns],
        [ObjectSpec(o.key, o.rows, o.size) for o in body.objects],
        body.row_count,
        fingerprint=body.fingerprint,
        extra=body.extra,
        expected_parent=body.parent_version,
    )
    response.status_code = 201 if created else 200
    return ManifestOut.of(manifest, deps)


@router.get("/datasets", response_model=DatasetList, summary="Every dataset's current version, paged by name")
async def list_datasets(
    deps: DepsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> DatasetList:
    """Datasets with their current version, by name, after `after`."""
    current = [m for m in await deps.catalog.datasets() if after is None or m.name > after]
    page = current[:limit]
    return DatasetList(
        datasets=[
            DatasetSummary(name=m.name, version=m.version, row_count=m.row_count, updated_at=m.created_at)
            for m in page
        ],
        next=page[-1].name if len(current) > limit else None,
    )


@router.get(
    "/datasets/{name}",
    response_model=ManifestOut,
    response_model_by_alias=True,
    summary="A dataset's current manifest, or version N of it",
)
async def get_manifest(
    name: str, deps: DepsDep, version: Annotated[int | None, Query(ge=1)] = None
) -> ManifestOut:
    """The current manifest, or `?version=N`."""
    return ManifestOut.of(await deps.catalog.get(name, version), deps)


@router.get("/datasets/{name}/versions", response_model=VersionList, summary="A dataset's version history")
async def list_versions(
    name: str,
    deps: DepsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> VersionList:
    """Versions of a dataset, oldest first, after version `after`."""
    history = [m for m in await deps.catalog.versions(name) if after is None or m.version > after]
    page = history[:limit]
    return VersionList(
        versions=[
            VersionSummary(
                version=m.version,
                row_count=m.row_count,
                fingerprint=m.fingerprint,
                created_at=m.created_at,
                parent_version=m.parent_version,
                snapshot_id=m.snapshot_id,
            )
            for m in page
        ],
        next=page[-1].version if len(history) > limit else None,
    )


@router.post(
    "/datasets/{name}/expire",
    response_model=ExpireResult,
    summary="Expire old versions (never the current one) and free the files only they used",
)
async def expire(name: str, body: ExpireRequest, deps: DepsDep) -> ExpireResult:
    """`keep_last` or `older_than`; an expired `"name@N"` is then an unknown view."""
    older = body.older_than
    if older is not None and older.tzinfo is None:
        older = older.replace(tzinfo=UTC)
    result = await deps.catalog.expire(name, keep_last=body.keep_last, older_than=older)
    return ExpireResult(expired=list(result.versions), bytes_freed=result.bytes_freed)


@router.delete(
    "/datasets/{name}",
    status_code=204,
    summary="Delete a dataset: every version, every file and its SQL views",
    responses={404: {"description": "No such dataset"}},
)
async def delete_dataset(name: str, deps: DepsDep) -> Response:
    """Remove the dataset; deleting again after an interrupted delete finishes it."""
    await deps.catalog.delete(name)
    return Response(status_code=204)


async def startup(deps: Deps) -> None:
    """Give data written by an earlier release its Iceberg tables before serving (idempotent)."""
    await deps.catalog.upgrade_all()


# catalogd also serves the Iceberg REST catalog (`/iceberg/v1/...`) over the same catalog.
_catalog_routes = router
router = APIRouter()
router.include_router(_catalog_routes)
router.include_router(iceberg.router)
