"""Floor 7: whole studies built from the floors below (battery, sweeps, report).
"""

from __future__ import annotations

