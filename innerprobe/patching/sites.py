"""Where a patch writes, and which way it goes.

A *site* names one activation of decoder layer ``l`` at one position:

* ``resid_pre``: the residual stream entering layer ``l`` (what TransformerLens calls
  ``blocks.l.hook_resid_pre``); patching it replaces everything the layers below wrote there;
* ``resid_post``: the residual leaving layer ``l`` (= ``resid_pre`` of ``l + 1``);
* ``attn_out``: what layer ``l``'s attention adds to the residual (after the post-attention norm
  in Gemma-style "sandwich" layers), the MLP then recomputed on the patched residual;
* ``mlp_out``: what layer ``l``'s MLP adds (after the post-feed-forward norm where there is one).

A *direction* says which run gives and which receives: ``denoise`` copies the clean (source) run
into the corrupt (target) one and asks which cells restore the clean behaviour; ``noise`` copies
corrupt into clean and asks which cells are necessary.
"""

from __future__ import annotations

SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out")
DIRECTIONS = ("denoise", "noise")

__all__ = ["DIRECTIONS", "SITES"]
