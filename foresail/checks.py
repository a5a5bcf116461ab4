"""Checks of a command's flags and of the files it will write, made before the work starts; each raises
ValueError with a message that names the flag."""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def check_port(flag: str, port: int | None) -> None:
    """ValueError unless ``port`` (None: not set) is a TCP port number."""
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"{flag} must be a port from 0 to 65535, not {port}")


def check_url(flag: str, url: str) -> None:
    """ValueError unless ``url`` is an http:// or https:// URL with a host (``prometheus:9090`` has no scheme: it
    would fail at every request)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is no number, or beyond 65535
        ok = False
    if not ok:
        raise ValueError(f"{flag} must be an http:// or https:// URL such as http://prometheus:9090, not {url!r}")


def check_writable(flag: str, path: str) -> None:
    """ValueError unless ``path`` names a file that can be written: not a folder, in a folder that exists and
    this user can write to."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder, not a file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"{flag} {path}: {folder} is not a folder this user can write to")


def check_plot(flag: str, path: str) -> str:
    """The file a plot goes to: ``path``, or ``path.png`` where it has no extension (as matplotlib names it).
    ValueError unless it can be written (``check_writable``) in a format matplotlib writes."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not ext:
        path, ext = path.rstrip(".") + ".png", "png"
    if ext not in formats:
        raise ValueError(f"{flag} {path}: the name must end in one of .{', .'.join(sorted(formats))} (none: .png)")
    check_writable(flag, path)
    return path
