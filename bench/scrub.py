"""How the scrubber's cost grows with the number of a tenant's known secrets.

Issue 14, point 5: one report of 200 events took 11 s with 1000 groups when each
secret was its own regular expression. Prints, for 1, 100, 1000 and 5000 known
strong secrets (passwords) and as many PINs, the time to build one `Scrubber` and
the time per text. Run: `.venv/bin/python bench/scrub.py`.
"""

from __future__ import annotations

import time

from api.domain.scrub import Scrubber

TEXTS = 200
TEXT = "call to 4711 ended: 486 Busy Here (password=hunter22, Authorization: Bearer x) {n}"


def main() -> None:
    print(f"{'secrets':>8} {'kind':>9} {'build ms':>9} {'per text µs':>12}")
    for n in (1, 100, 1000, 5000):
        for kind, secrets in (
            ("passwords", [f"Pw-{i:06d}-geheim!" for i in range(n)]),
            ("pins", [str(10_000_000 + i) for i in range(n)]),
        ):
            started = time.perf_counter()
            scrubber = Scrubber(secrets)
            built = time.perf_counter() - started
            started = time.perf_counter()
            for i in range(TEXTS):
                scrubber(TEXT.format(n=i))
            per_text = (time.perf_counter() - started) / TEXTS
            print(f"{n:>8} {kind:>9} {built * 1000:>9.1f} {per_text * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
