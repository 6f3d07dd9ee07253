"""The loader's copy of sql/0002's grid (benchmarks.workload.Grid) and the guard on changed schema settings.
The integration tests compare Grid.key with the SQL function on real Citus; these pin its edge rules."""

from __future__ import annotations

import pytest

from benchmarks.workload import Grid
from cluster.config import load_config
from cluster.provision.migrations import changed_settings
from cluster.provision.target import SCHEMA_SETTINGS, schema_settings

# 0.5° cells, 4 shards: keys 10..13 stand for the four shards' distribution values.
GRID = Grid(cell_degrees=0.5, ncols=720, nrows=360, step=2, keys=(10, 11, 12, 13))


def test_the_antimeridian_is_one_edge_whichever_side_names_it() -> None:
    assert GRID.key(180.0, 10.0) == GRID.key(-180.0, 10.0) == GRID.key(540.0, 10.0)
    assert GRID.key(179.9, 10.0) == GRID.key(-180.1, 10.0)  # the last column, from either side


def test_poles_and_out_of_range_latitudes_fall_in_the_edge_rows() -> None:
    assert GRID.key(0.0, 90.0) == GRID.key(0.0, 89.9)  # the north pole closes the last row
    assert GRID.key(0.0, -90.0) == GRID.key(0.0, -89.9)


def test_cells_are_dealt_to_shards_in_a_tile() -> None:
    # Along a row, neighbouring cells go to consecutive shards; a row further up is shifted by `step`.
    row = [GRID.key(-180 + 0.25 + 0.5 * c, 0.25) for c in range(4)]
    above = [GRID.key(-180 + 0.25 + 0.5 * c, 0.75) for c in range(4)]
    assert sorted(row) == [10, 11, 12, 13]
    assert above == row[2:] + row[:2]
    assert GRID.key(-180 + 0.25, 0.25) == GRID.key(-180 + 0.25 + 0.5 * 4, 0.25)  # the tile repeats


def test_a_cell_edge_belongs_to_the_cell_east_and_north_of_it() -> None:
    assert GRID.key(0.5, 0.25) != GRID.key(0.5 - 1e-9, 0.25)
    assert GRID.key(0.5, 0.25) == GRID.key(0.5 + 1e-9, 0.25)


def test_stack_config_becomes_schema_settings_with_their_keys() -> None:
    settings = schema_settings(load_config({"citus": {"distribution": {"cellDegrees": 0.05}}}).config)
    assert settings == {"distribution_strategy": "spatial", "cell_degrees": "0.05"}
    assert set(settings) == set(SCHEMA_SETTINGS)


def test_a_changed_setting_names_the_stack_key_and_both_values() -> None:
    recorded = {"distribution_strategy": "spatial", "cell_degrees": "0.04"}
    assert changed_settings(recorded, recorded) == []
    assert changed_settings(recorded, {**recorded, "distribution_strategy": "vehicle"}) == [
        "citus.distribution.strategy: the schema was built with 'spatial', the stack now says 'vehicle'"]
    assert changed_settings({}, recorded) == []  # nothing built yet: nothing to protect


@pytest.mark.parametrize("lon", [-73.9857, 0.0, 179.999999, -179.999999])
def test_a_key_is_one_of_the_shards_values(lon: float) -> None:
    assert GRID.key(lon, 40.7484) in GRID.keys
