"""The settings (``callq.settings``): one pydantic-settings object, built once per process.

Kept as the place operators and scripts know; everything lives in :mod:`callq.settings`.
"""

from callq.settings import (
    ConfigError,
    ExotelAccount,
    Settings,
    caller_ids,
    load_settings,
    time_scaled,
)

__all__ = [
    "ConfigError",
    "ExotelAccount",
    "Settings",
    "caller_ids",
    "load_settings",
    "time_scaled",
]
