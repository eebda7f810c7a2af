"""The `with` protocol of the test beds' peers, written once.

`Started`: `with peer:` runs `peer.start()` and, on the way out, `peer.stop()` (a
process or a server that the block needs running). `Closed`: `with peer:` hands the
peer back as built and calls `peer.close()` on the way out (it runs from its
constructor on). Errors in the block are never swallowed.
"""

from __future__ import annotations

from typing import Self


class Started:
    """`with x:` is `x.start()` ... `x.stop()`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Closed:
    """`with x:` is `x` ... `x.close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
