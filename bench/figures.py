"""What the benchmarks share for their figures and their progress lines.

`percentile`: nearest rank, so that a p99 is a value that was measured (no
interpolation between two runs). `log`: a progress line on stderr with the time,
so that stdout keeps only the results.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN without values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
