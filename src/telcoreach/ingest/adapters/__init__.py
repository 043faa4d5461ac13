"""Adapters that read real public data sets into telcoreach record kinds."""

from telcoreach.ingest.adapters._bank import read_bank_marketing
from telcoreach.ingest.adapters._beijing import (
    build_city_cells,
    read_base_stations,
    read_subway_stations,
)
from telcoreach.ingest.adapters._geolife import (
    geolife_to_signalling,
    label_transport_modes,
    read_geolife,
    read_geolife_labels,
)
from telcoreach.ingest.adapters._talkingdata import (
    read_talkingdata,
    talkingdata_distributions,
)
from telcoreach.ingest.adapters._weather import read_weather

__all__ = [
    "build_city_cells",
    "geolife_to_signalling",
    "label_transport_modes",
    "read_bank_marketing",
    "read_base_stations",
    "read_geolife",
    "read_geolife_labels",
    "read_subway_stations",
    "read_talkingdata",
    "read_weather",
    "talkingdata_distributions",
]
