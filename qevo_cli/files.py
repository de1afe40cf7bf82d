"""Writing files so that they are complete or absent, never half-written."""
from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

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


def temporary_beside(path: Path) -> str:
    """A new empty temporary file in `path`'s folder, named after it (shortened: a 255-character name is legal
    and its temporary name must be too) and after this process. A process killed with SIGKILL cannot remove
    its temporary file: the next write of the same file removes those of processes no longer running."""
    stem = f".{path.name[:100]}."
    for stale in path.parent.glob(f"{glob.escape(stem)}*.tmp"):
        pid = stale.name[len(stem):].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{stem}{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    return tmp


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # running, under another user
        return True
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(path)
    except OSError as err:
        raise QevoError(f"cannot write here ({err.strerror})", path=path) from None
    try:
        with open(tmp, "wb") as handle:
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


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML's safe loader (libyaml's when present: ten times faster, and a search may load profiles often)
    that refuses a key given twice in one mapping, where plain YAML keeps the last one silently (a layer
    named twice in a policy, `pop` twice in a config)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:   # an unhashable key: the base constructor reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml(text: str, path: str | Path | None) -> Any:
    """Parse YAML text; a syntax error or a duplicate key is one QevoError with its line and column."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
        raise QevoError(f"not valid YAML{where} ({problem})", path=path) from None
    except (RecursionError, ValueError, OverflowError) as error:
        raise QevoError(f"not valid YAML ({type(error).__name__})", path=path) from None
