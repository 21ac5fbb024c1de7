"""Floor 5: interventions on the residual stream (lenses, steering, ablation, injection).
"""

from __future__ import annotations

