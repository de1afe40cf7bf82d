"""Writing files so that they are complete or absent, never half-written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import QevoError


def _file_mode(path: Path) -> int:
    """An existing file's mode, else what the umask allows (mkstemp's own 0600 would hide results)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file its mode and rename it over `path`."""
    os.chmod(tmp, _file_mode(Path(path)))
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise QevoError(f"cannot write here ({err.strerror})", path=path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise QevoError(f"cannot write ({err.strerror})", path=path) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is one QevoError naming `what`."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise QevoError(f"not UTF-8 text (byte {err.start}), expected {what}", path=path) from None
    except OSError as err:
        raise QevoError(f"cannot read {what} ({err.strerror or err})", path=path) from None
