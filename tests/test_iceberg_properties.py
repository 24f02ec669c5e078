"""The table-property rule: a client's own keys are settable, configuration never is."""

from __future__ import annotations

import pytest
from pyiceberg.table import TableProperties

from lakehouse.catalog.properties import SERVER_PROPERTIES, kept_properties, settable_property


@pytest.mark.parametrize("key", ["owner", "comment", "team.contact", "data-steward", "Owner", "writer"])
def test_a_clients_own_key_is_settable(key: str) -> None:
    assert settable_property(key)


@pytest.mark.parametrize(
    "key",
    [
        TableProperties.WRITE_METADATA_PATH,
        TableProperties.WRITE_PY_LOCATION_PROVIDER_IMPL,
        TableProperties.WRITE_AVRO_COMPRESSION,
        TableProperties.DEFAULT_NAME_MAPPING,
        TableProperties.FORMAT_VERSION,
        "Write.Metadata.Path",
        "py-io-impl",
        "s3.endpoint",
        "lakehouse.version",
        "",
    ],
)
def test_configuration_is_not_settable(key: str) -> None:
    assert not settable_property(key)


def test_a_new_version_keeps_the_servers_and_the_clients_keys_only() -> None:
    planted = {
        TableProperties.DEFAULT_NAME_MAPPING: "[]",
        "write.parquet.compression-codec": "zstd",
        "owner": "alice",
        TableProperties.WRITE_METADATA_PATH: "file:///elsewhere",
    }
    assert kept_properties(planted) == {
        TableProperties.DEFAULT_NAME_MAPPING: "[]",
        "write.parquet.compression-codec": "zstd",
        "owner": "alice",
    }
    assert TableProperties.DEFAULT_NAME_MAPPING in SERVER_PROPERTIES


def _constants(holder: object) -> dict[str, str]:
    return {k: v for k, v in vars(holder).items() if k.isupper() and isinstance(v, str)}


def test_every_fileio_and_table_property_pyiceberg_knows_is_refused() -> None:
    """pyiceberg's REST client merges a table's properties into each reader's FileIO settings."""
    import pyiceberg.io

    keys = [v for v in _constants(pyiceberg.io).values() if "/" not in v]  # not the signer's URL path
    keys += [
        v
        for k, v in _constants(TableProperties).items()
        if not k.endswith("_DEFAULT") and not k.startswith("DELETE_MODE_")  # values, not keys
    ]
    assert len(keys) > 60
    assert [k for k in keys if settable_property(k)] == []


@pytest.mark.parametrize(
    "key",
    ["buffer-size", "DEFAULT_SCHEME", "DEFAULT_NETLOC", "client_secret", "auth.manager", "glue.endpoint"],
)
def test_configuration_joined_by_underscores_or_outside_the_table_constants_is_refused(key: str) -> None:
    assert not settable_property(key)
