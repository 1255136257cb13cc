"""Secrets kept out of what the package writes and shows: `redact_secrets` blanks the
current values of HF_TOKEN, HUGGING_FACE_HUB_TOKEN, WANDB_API_KEY and the NOSHOW_AUTH
password, and anything shaped like a Hugging Face token, in any string (run files, logs,
error messages, job snapshots); `drop_secret_keys` also drops entries whose key names a
credential (token, key, secret, password), for config files. `redact_library_paths` takes
the server's Python installation out of a message for users (an import error names the
library's file on the server: "... from 'transformers' (/srv/.venv/lib/.../__init__.py)").

    from noshow.system.redact import redact_secrets
    redact_secrets("401 for token hf_abc...")      # -> "401 for token hf_<redacted>"
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from collections.abc import Mapping
from typing import Any

# Key names that may hold credentials; such entries are dropped from config files.
_SECRET_KEY = re.compile(r"token|key|secret|password|passwd|credential", re.IGNORECASE)
# Hugging Face access tokens pasted into an ordinary field (e.g. a URL) are redacted too.
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
# Environment variables whose values must never be written or shown.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "NOSHOW_AUTH")
REDACTED = "<redacted>"
_MIN_SECRET_CHARS = 6  # shorter values would blank ordinary words


def _secret_values() -> list[str]:
    values = []
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if name == "NOSHOW_AUTH":
            value = value.partition(":")[2]  # the password; the user name is no secret
        if len(value) >= _MIN_SECRET_CHARS:
            values.append(value)
    return sorted(values, key=len, reverse=True)


def redact_secrets(value: Any) -> Any:
    """`value` with secrets blanked: the current values of SECRET_ENV_VARS and Hugging Face
    token shapes in every string (recursing into dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    if not isinstance(value, str):
        return value
    for secret in _secret_values():
        value = value.replace(secret, REDACTED)
    return _HF_TOKEN.sub("hf_" + REDACTED, value)


def drop_secret_keys(value: Any) -> Any:
    """`value` without the entries whose key names a credential (at any depth), and the
    rest through `redact_secrets`: what a config file may hold."""
    if isinstance(value, Mapping):
        return {
            str(k): drop_secret_keys(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))
        }
    if isinstance(value, list | tuple):
        return [drop_secret_keys(v) for v in value]
    return redact_secrets(value)


# " (/path/to/module.py)": how Python's import errors name the file they looked in.
_FILE_IN_PARENS = re.compile(r"\s*\((?:[A-Za-z]:)?[\\/][^()\n]*\.py[cd]?\)")


def _library_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(p for p in sysconfig.get_paths().values() if p)
    return sorted((r.rstrip("/") for r in roots if len(r) > 1), key=len, reverse=True)


def redact_library_paths(text: str) -> str:
    """`text` without the server's Python installation: a "(<path>.py)" aside is dropped,
    any other path into the installation (site-packages, the venv) becomes "<python>/...".
    Paths a user chose (a data file, a run folder) are kept."""
    text = _FILE_IN_PARENS.sub("", str(text))
    for root in _library_roots():
        text = text.replace(root + "/", "<python>/")
    return re.sub(r"(?:[\\/][^\s'\"()]+)*[\\/](?:site|dist)-packages[\\/]", "<python>/", text)
