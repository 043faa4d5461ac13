"""Features: subscriber profiles, stay points, home/work and mobility."""

from telcoreach.features._mr import mr_positions
from telcoreach.features._profile import (
    ProfileSummary,
    build_profiles,
    cell_dwell,
    home_cells,
    located_events,
    school_zone_cells,
    work_cells,
)
from telcoreach.features._staypoints import detect_staypoints, staypoints_csv

__all__ = [
    "ProfileSummary",
    "build_profiles",
    "cell_dwell",
    "detect_staypoints",
    "home_cells",
    "located_events",
    "mr_positions",
    "school_zone_cells",
    "staypoints_csv",
    "work_cells",
]
