"""Checks of the operator's and the activator's command lines, made before anything starts; each raises
ValueError with a message that names the flag."""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def use_kubeconfig(path: str | None) -> None:
    """Point ``KUBECONFIG`` at ``path`` when given; ValueError if it is not a readable file (kopf would retry
    the login every minute for ever)."""
    if not path:
        return
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"--kubeconfig {path} is not a file this user can read")
    os.environ["KUBECONFIG"] = os.path.abspath(path)


def check_upstream(template: str) -> None:
    """ValueError unless ``template`` makes an http(s) URL from ``{name}`` and ``{namespace}``."""
    try:
        url = template.format(name="name", namespace="namespace")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"--upstream {template!r}: only {{name}} and {{namespace}} may be "
                         f"filled in ({type(exc).__name__}: {exc})") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream {template!r} is not an http:// or https:// URL")
