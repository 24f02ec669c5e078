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
