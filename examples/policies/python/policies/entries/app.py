"""The ``python-entries`` component (componentize-py ... componentize app)."""

from ramrod_kit.component import export
from ramrod_kit.entries import Entries

Policy = export("python-entries", Entries)
