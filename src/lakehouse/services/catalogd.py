"""catalogd routes: register dataset versions, read manifests and histories, delete datasets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from lakehouse.catalog import Column, Manifest, ObjectSpec
from lakehouse.catalog.manifest import MAX_COLUMNS, MAX_OBJECTS
from lakehouse.services.deps import DepsDep

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


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

    @classmethod
    def of(cls, manifest: Manifest) -> ManifestOut:
        """The public form of a stored manifest."""
        return cls.model_validate({**manifest.to_dict(), "problems": list(manifest.problems)})


class DatasetSummary(BaseModel):
    """A dataset's current version, as listed."""

    name: str
    version: int
    row_count: int
    updated_at: str


class DatasetList(BaseModel):
    """Every dataset's current version."""

    datasets: list[DatasetSummary]


class VersionSummary(BaseModel):
    """One entry of a dataset's history."""

    version: int
    row_count: int
    fingerprint: str
    created_at: str
    parent_version: int | None


class VersionList(BaseModel):
    """A dataset's history, oldest first."""

    versions: list[VersionSummary]


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
    return ManifestOut.of(manifest)


@router.get("/datasets", response_model=DatasetList, summary="Every dataset's current version")
async def list_datasets(deps: DepsDep) -> DatasetList:
    """Every dataset with its current version."""
    current = await deps.catalog.datasets()
    return DatasetList(
        datasets=[
            DatasetSummary(name=m.name, version=m.version, row_count=m.row_count, updated_at=m.created_at)
            for m in current
        ]
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
    return ManifestOut.of(await deps.catalog.get(name, version))


@router.get("/datasets/{name}/versions", response_model=VersionList, summary="A dataset's version history")
async def list_versions(name: str, deps: DepsDep) -> VersionList:
    """Every version of a dataset, oldest first."""
    history = await deps.catalog.versions(name)
    return VersionList(
        versions=[
            VersionSummary(
                version=m.version,
                row_count=m.row_count,
                fingerprint=m.fingerprint,
                created_at=m.created_at,
                parent_version=m.parent_version,
            )
            for m in history
        ]
    )


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
