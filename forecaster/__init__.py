"""surgecast forecaster: ingest traffic, forecast it with calibrated quantiles, store models.

Series travel as long-format pandas frames with columns ``unique_id, ds, y``: ``ds`` is a
timezone-naive timestamp in UTC and ``y`` a request count per interval, NaN where the data
is missing (an outage or an absent log file), which is not the same as a quiet interval.
This package never imports ``controller``.
"""

__version__ = "0.1.0"
