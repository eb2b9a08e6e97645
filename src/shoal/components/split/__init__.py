"""The split ambassador (``shoal ambassador split``): canary weights, stickiness and mirroring.

* :mod:`~shoal.components.split.core`: the pure decisions (:class:`Splitter`, :class:`MirrorPolicy`);
* :mod:`~shoal.components.split.ambassador`: the proxy around them and the shadow's :class:`Mirror`.
"""

from shoal.components.split.ambassador import (
    Mirror,
    SplitConfig,
    SplitCounts,
    SplitSettings,
    run_split,
    split_ambassador,
)
from shoal.components.split.core import MirrorPolicy, Splitter, cookie_value, sticky_key

__all__ = [
    "Mirror",
    "MirrorPolicy",
    "SplitConfig",
    "SplitCounts",
    "SplitSettings",
    "Splitter",
    "cookie_value",
    "run_split",
    "split_ambassador",
    "sticky_key",
]
