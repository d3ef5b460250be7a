"""Optional tqdm progress bars counted in bytes."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from tqdm.auto import tqdm as Tqdm
    from typing_extensions import Self


class Progress:
    """A thread-safe byte counter shown as a ``tqdm.auto`` bar, or nothing.

    Parameters
    ----------
    total : int or None
        Expected bytes, if known.
    desc : str
        Label shown in front of the bar.
    enabled : bool or None
        ``None`` shows a bar only when tqdm is installed, the output is a terminal or a notebook (with
        ipywidgets), and the transfer takes more than half a second; ``True`` forces it (and needs tqdm);
        ``False`` never shows one.
    """

    def __init__(self, total: int | None, desc: str, enabled: bool | None) -> None:
        # A bar that counts (no iterable), hence its item type.
        self._bar: Tqdm[NoReturn] | None = None
        self._lock = threading.Lock()
        if enabled is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if enabled:
                raise ImportError("progress=True needs tqdm: pip install tqdm") from None
            return
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            # None: tqdm turns itself off when stdout is not a terminal, so CI logs stay clean.
            disable=None if enabled is None else False,
            # By default a bar appears only once a transfer has taken half a second, so quick calls stay quiet.
            delay=0 if enabled else 0.5,
            leave=True,
        )

    @property
    def active(self) -> bool:
        """Whether a bar may be shown (callers can skip byte counting otherwise)."""
        return self._bar is not None

    def update(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes."""
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
