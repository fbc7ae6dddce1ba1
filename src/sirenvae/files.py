"""Atomic file writes: a reader sees the old file or the new one, never a half-written one; and
the lock that keeps two processes from writing one run directory.

The content goes to a temporary file in the target's directory (so the final rename stays on one
file system), is flushed to disk with ``fsync``, and then replaces the target with ``os.replace``.
If writing fails, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "run_lock"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp)`` on a fresh temporary file next to ``path``, then moves it onto ``path``.

    The temporary file is created with the usual permissions (``0o666`` less the umask), so the
    result has the same mode as a file written directly.
    """
    path = Path(path)
    tmp = _new_temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _new_temporary(path: Path) -> Path:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


#: The file that marks a run directory as being written, holding the writer's process ID.
LOCK = ".sirenvae.lock"


@contextlib.contextmanager
def run_lock(directory: str | Path | None) -> Iterator[None]:
    """Holds ``directory`` for this process while the body runs: a second writer while another
    live process holds it is a :class:`ValueError` (a lock left by a process that died is taken
    over). ``None``: nothing to hold.
    """
    if directory is None:
        yield
        return
    path = Path(directory) / LOCK
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = _holder(path)
            if pid is not None and pid != os.getpid() and _alive(pid):
                raise ValueError(
                    f"{directory} is being written by another sirenvae process (pid {pid}): wait for it "
                    f"to end, or choose another output directory (remove {path} if no such process is)"
                ) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for d in created:  # a run that wrote nothing leaves no directory behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
