"""Reading the files the config names (the config itself, `secret_file:`) without ever blocking
or filling memory: only a regular file of bounded size is read. A FIFO would block the reader
until someone writes to it, `/dev/zero` would never end; both are refused with a reason."""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_CONFIG_BYTES = 256 * 1024
"""A config file is a few kilobytes; a thousand employees take about 60 KB."""
MAX_SECRET_BYTES = 64 * 1024


class FileRefused(Exception):
    """Why the file cannot be read, in the admin's words."""


def read_text_file(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of `path`, a regular file of at most `max_bytes`; FileRefused otherwise.
    The file is opened without blocking, so a FIFO cannot hold the caller."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(exc.strerror or str(exc)) from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise FileRefused("not a regular file (a FIFO, device or directory cannot be read)")
        if status.st_size > max_bytes:
            raise FileRefused(f"larger than {max_bytes:,} bytes")
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise FileRefused(exc.strerror or str(exc)) from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:  # grew since fstat
        raise FileRefused(f"larger than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused("not UTF-8 text") from None
