"""The ``python-rate-aware`` component (componentize-py ... componentize app)."""

from ramrod_kit.component import export
from ramrod_kit.rate_aware import RateAware

Policy = export("python-rate-aware", RateAware)
