"""Start on enter, stop on exit: the context manager both ways of running the emulator share.

:class:`~mdcollect.testing.ExchangeEmulator` (a thread in this process) and
:class:`~mdcollect.testing.EmulatorProcess` (a child process) each say how they
start and how they shut down; ``with`` works the same for both.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Lifecycle"]


class Lifecycle(abc.ABC):
    """A server that ``with`` starts on enter and shuts down on exit, whatever happened."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Start serving; returns self."""

    @abc.abstractmethod
    def _shut_down(self) -> None:
        """Stop serving and release what :meth:`start` took (called on ``with`` exit)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shut_down()
