"""Which Citus, PostgreSQL and PostGIS releases work together, and which image tag carries them.

One table per product, kept here and nowhere else: the config validator, the Dockerfile renderer and the
README's config reference all read it. When a new release ships, add a row; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CitusRelease:
    """A Citus minor release line and the PostgreSQL majors the official image is published for."""

    line: str  # "13.2"
    postgres: tuple[int, ...]  # supported PostgreSQL majors
    latest_postgres: int  # the major behind the image's untagged-suffix tag ("13.2.0" rather than "-pg16")


# From the citusdata/docker publishing matrix: the plain tag carries the newest PostgreSQL,
# "-pgNN" tags carry the older supported majors.
CITUS_RELEASES: dict[str, CitusRelease] = {
    r.line: r
    for r in (
        CitusRelease("12.1", (14, 15, 16), 16),
        CitusRelease("13.0", (15, 16, 17), 17),
        CitusRelease("13.1", (15, 16, 17), 17),
        CitusRelease("13.2", (15, 16, 17), 17),
    )
}

# PostGIS minor lines and the PostgreSQL majors each supports (PostGIS' own support matrix).
POSTGIS_RELEASES: dict[str, tuple[int, ...]] = {
    "3.3": (11, 12, 13, 14, 15),
    "3.4": (12, 13, 14, 15, 16, 17),
    "3.5": (12, 13, 14, 15, 16, 17),
    "3.6": (13, 14, 15, 16, 17, 18),
}

# "3" means: the newest 3.x the PostgreSQL apt repository ships for that major (no pin).
POSTGIS_UNPINNED = "3"


def citus_line(version: str) -> str:
    """'13.2.0' -> '13.2'."""
    return ".".join(version.split(".")[:2])


def citus_image_tag(citus: str, postgres: int) -> str:
    """The official image tag that carries Citus `citus` on PostgreSQL `postgres`."""
    release = CITUS_RELEASES[citus_line(citus)]
    return citus if postgres == release.latest_postgres else f"{citus}-pg{postgres}"


def postgis_supports(postgis: str, postgres: int) -> bool:
    if postgis == POSTGIS_UNPINNED:
        return any(postgres in majors for majors in POSTGIS_RELEASES.values())
    return postgres in POSTGIS_RELEASES.get(postgis, ())
