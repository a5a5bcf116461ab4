"""Checks of the operator's and the activator's command lines, made before anything starts; each raises
ValueError with a message that names the flag, the environment variable or the file."""

from __future__ import annotations

import os
from string import Formatter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from foresail.checks import check_port

if TYPE_CHECKING:
    import kopf

UPSTREAM_FIELDS = ("name", "namespace")


def kube_login(**kwargs: Any) -> tuple[kopf.ConnectionInfo | None, str | None]:
    """Log in as kubectl does: with the kubeconfig ``KUBECONFIG`` names where it is set (``--kubeconfig`` sets it),
    else from the pod's service account, else from ~/.kube/config; ``kwargs`` are kopf's login arguments. Also the
    file of the service account's token, which the kubelet rotates (None for a kubeconfig)."""
    import kopf

    from foresail_operator.kube import SERVICE_ACCOUNT_TOKEN

    if not os.environ.get("KUBECONFIG"):
        info = kopf.login_with_service_account(**kwargs)
        if info is not None:
            return info, SERVICE_ACCOUNT_TOKEN
    return kopf.login_with_kubeconfig(**kwargs), None


def use_kubeconfig(path: str | None) -> tuple[kopf.ConnectionInfo, str | None]:
    """Point ``KUBECONFIG`` at ``path`` when given, and log in as the operator does (``kube_login``): the connection
    and the service account's token file where it logged in with that. ValueError naming the file and the problem
    where that fails (kopf would retry the login every minute for ever)."""
    import kopf

    if path:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ValueError(f"--kubeconfig {path} is not a file this user can read")
        os.environ["KUBECONFIG"] = os.path.abspath(path)
    source = _kubeconfig_source(path)
    try:
        info, token_file = kube_login(settings=kopf.OperatorSettings())
    except OSError as exc:
        raise ValueError(f"{source}: cannot read {exc.filename}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not YAML: {_yaml_problem(exc)}") from None
    except (kopf.LoginError, LookupError, TypeError, AttributeError) as exc:
        raise ValueError(f"{source} is not a kubeconfig to log in with ({type(exc).__name__}: {exc})") from None
    if info is None:
        raise ValueError("no Kubernetes credentials: run in a pod with a service account, pass --kubeconfig or set "
                         "KUBECONFIG")
    return info, token_file


def _kubeconfig_source(path: str | None) -> str:
    """Where the kubeconfig comes from, in the words the user set it with."""
    if path:
        return f"--kubeconfig {path}"
    return f"KUBECONFIG={os.environ['KUBECONFIG']}" if os.environ.get("KUBECONFIG") else "~/.kube/config"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and its line."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} (line {exc.problem_mark.line + 1})"
    return str(exc).splitlines()[0]


def port_setting(flag: str, port: int | None, variable: str) -> int:
    """The port given with ``flag``, else the one in the environment ``variable`` (0 when unset); ValueError unless
    it is a TCP port number, naming the flag or the variable, whichever set it."""
    if port is None:
        flag, text = variable, os.environ.get(variable, "0")
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"{variable} must be a port from 0 to 65535, not {text!r}") from None
    check_port(flag, port)
    return port


def check_upstream(template: str) -> None:
    """ValueError unless ``template`` makes an http(s) URL from plain ``{name}`` and ``{namespace}`` fields (no
    attribute, index, conversion or format spec: the URL would hold what they make of the names)."""
    only = "only {name} and {namespace} may be filled in"
    try:
        fields = [(field, conversion, spec) for _, field, spec, conversion in Formatter().parse(template)
                  if field is not None]
    except ValueError as exc:
        raise ValueError(f"--upstream {template!r}: {only} ({exc})") from None
    for field, conversion, spec in fields:
        if field not in UPSTREAM_FIELDS or conversion or spec:
            text = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"--upstream {template!r}: {only}, not {{{text}}}")
    parts = urlsplit(template.format(name="name", namespace="namespace"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream {template!r} is not an http:// or https:// URL")
