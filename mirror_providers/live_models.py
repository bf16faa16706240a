"""What the vendors' models endpoints say, merged over the shipped catalog, and kept on disk.

``HttpProvider.refresh_models_sync()`` reads a vendor's listing (OpenAI ``GET /v1/models``, the
Anthropic Models API, Ollama ``/api/tags`` + ``/api/show``) into *live rows*: a model id and the
fields the vendor reported (context window, output limit, vision, PDF input, structured output,
reasoning, shutdown date). This module merges them over the shipped rows (a live field wins; what
the vendor does not report keeps the shipped value; a model the catalog does not know gets the
provider's conservative defaults) and caches the live rows in a JSON file per vendor and server,
so later processes start from them. The cache holds only what the vendor said, never a key, and is
re-merged over whichever catalog ships with the installed version.

The cache directory is ``$MIRROR_PROVIDERS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mirror-providers``,
else ``~/.cache/mirror-providers``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from . import models as model_data
from .types import ModelInfo

__all__ = ["LIVE_FIELDS", "cache_dir", "cache_path", "merge_live", "merged_cache", "read_cache", "write_cache"]

logger = logging.getLogger("mirror_providers")

# The ModelInfo fields a vendor listing may set, with the type each must have.
LIVE_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "context_window": int, "max_output": int, "vision": bool, "documents": bool, "tools": bool,
    "structured_output": bool, "reasoning": (str, type(None)), "reasoning_levels": tuple,
    "lifecycle": str, "retires_on": (str, type(None)),
}
CACHE_SCHEMA = 1
MAX_LOGGED = 10  # unusable listing values named in one warning


def cache_dir() -> str:
    """Where the live model listings are kept (see the module docstring)."""
    explicit = os.environ.get("MIRROR_PROVIDERS_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mirror-providers")


def cache_path(provider: str, base_url: str) -> str:
    """The cache file of one vendor at one server (the URL is hashed: it may carry userinfo)."""
    import hashlib  # here, not at the top: it loads OpenSSL's libcrypto (see bench/ import row)

    digest = hashlib.sha256(base_url.rstrip("/").encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_dir(), f"models-{provider}-{digest}.json")


def _checked_row(row: Any, problems: list[str] | None = None) -> dict[str, Any] | None:
    """A live row with only the fields it may set, each of the right type; None without an id.
    Each value left out is described in ``problems``."""
    if not isinstance(row, Mapping) or not isinstance(row.get("id"), str) or not row["id"]:
        return None
    out: dict[str, Any] = {"id": row["id"]}
    for name, value in row.items():
        if name == "id":
            continue
        kind = LIVE_FIELDS.get(name)
        if kind is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
        good = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is int and good and value <= 0:
            good = False
        if name == "reasoning_levels" and good:
            good = all(isinstance(v, str) for v in value)
        if name == "lifecycle" and good:
            good = value in ("active", "deprecated", "retired")
        if name == "retires_on" and isinstance(value, str):
            good = model_data.is_iso_date(value)
        if name == "reasoning" and isinstance(value, str):
            good = value in ("effort", "adaptive", "budget", "think", "think_levels")
        if good:
            out[name] = value
        elif problems is not None:
            problems.append(f"{name} of {row['id'][:100]} is {str(value)[:60]!r}")
    return out


def merge_live(shipped: Iterable[ModelInfo], live: Iterable[Mapping[str, Any]], unknown: ModelInfo,
               provider: str, lookup_name: Any = None) -> tuple[ModelInfo, ...]:
    """The shipped rows with the live rows merged over them; new models appended.

    Args:
        shipped: the catalog's rows for this vendor.
        live: the vendor's rows (``{"id": ..., field: value}``), fields checked here.
        unknown: the provider's conservative row for a model the catalog does not know.
        provider: the vendor id the new rows get.
        lookup_name: maps a listed id to the name looked up in the catalog (Ollama drops ``:latest``).
    """
    rows = list(shipped)
    by_name = {name: i for i, row in enumerate(rows) for name in row.names()}
    problems: list[str] = []
    for given in live:
        row = _checked_row(given, problems)
        if row is None:
            continue
        listed = row.pop("id")
        name = lookup_name(listed) if lookup_name is not None else listed
        index = by_name.get(name, by_name.get(listed))
        if index is not None:
            known = rows[index]
            if row.get("reasoning") == "think" and known.reasoning == "think_levels":
                del row["reasoning"]  # Ollama says only "thinking"; the catalog knows the levels
            if name not in (known.id, *known.aliases):
                # A dated snapshot of the family: its own shutdown is not the family's (OpenAI
                # retires old snapshots while the alias lives on).
                row.pop("retires_on", None)
                row.pop("lifecycle", None)
            rows[index] = dataclasses.replace(known, **row)
            continue
        fields = {"context_window": unknown.context_window, "max_output": unknown.max_output,
                  "vision": unknown.vision, "tools": unknown.tools, "tier": unknown.tier,
                  "structured_output": unknown.structured_output, **row}
        if fields["max_output"] > fields["context_window"]:
            fields["max_output"] = fields["context_window"]
        rows.append(ModelInfo(id=name, provider=provider, **fields))
        by_name[name] = len(rows) - 1
    if problems:
        shown = "; ".join(problems[:MAX_LOGGED])
        more = f" (and {len(problems) - MAX_LOGGED} more)" if len(problems) > MAX_LOGGED else ""
        logger.warning("model listing: %s%s: not usable, the catalog's values are kept", shown, more)
    return tuple(rows)


_merged: dict[tuple[Any, ...], tuple[ModelInfo, ...]] = {}  # a cached listing merged, by file version


def merged_cache(provider: str, base_url: str, shipped: tuple[ModelInfo, ...], unknown: ModelInfo,
                 lookup_name: Any = None) -> tuple[ModelInfo, ...] | None:
    """The cached listing for this server merged over ``shipped``, once per file version and
    process (a constructor pays a stat, not a merge); None without a usable cache."""
    cached = read_cache(provider, base_url)
    if cached is None:
        return None
    key = (provider, cache_path(provider, base_url), cached[0], id(cached[1]), id(shipped), unknown, lookup_name)
    with _lock:
        hit = _merged.get(key)
    if hit is None:
        hit = merge_live(shipped, cached[1], unknown, provider, lookup_name)
        with _lock:
            if len(_merged) > 64:
                _merged.clear()
            _merged[key] = hit
    return hit


_lock = threading.Lock()
_read: dict[str, tuple[float, float, tuple[dict[str, Any], ...]]] = {}  # path -> (mtime, fetched_at, rows)


def _fresh_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # one another thread held at fork() would stay held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


def read_cache(provider: str, base_url: str) -> tuple[float, tuple[dict[str, Any], ...]] | None:
    """``(fetched_at, live rows)`` from the cache file, or None when there is none (or it is not
    a regular file, not ours, unreadable, or older than the shipped catalog's date: then the
    shipped data is the newer word). Never raises: a bad cache file must not break a constructor.
    Read once per file version in a process."""
    if not os.path.isdir(cache_dir()):  # nothing was ever cached here (the usual case): no hash to compute
        return None
    path = cache_path(provider, base_url)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open, a directory cannot be read
        return None
    with _lock:
        hit = _read.get(path)
    if hit is not None and hit[0] == st.st_mtime:
        return hit[1], hit[2]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        fetched_at = data["fetched_at"]
        if isinstance(fetched_at, bool) or not isinstance(fetched_at, (int, float)) or not math.isfinite(fetched_at):
            raise ValueError(f"fetched_at is {str(fetched_at)[:40]!r}")
        fetched_at = float(fetched_at)
        fetched_day = time.strftime("%Y-%m-%d", time.gmtime(fetched_at))
        if data.get("schema") != CACHE_SCHEMA or data.get("provider") != provider:
            return None
        rows = tuple(dict(r) for r in data["rows"] if isinstance(r, Mapping))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        logger.warning("model cache %s is unreadable (%s); using the shipped catalog", path, type(exc).__name__)
        return None
    shipped_day = model_data.as_of()
    if shipped_day and fetched_day < shipped_day:
        return None
    with _lock:
        _read[path] = (st.st_mtime, fetched_at, rows)
    return fetched_at, rows


def write_cache(provider: str, base_url: str, rows: Iterable[Mapping[str, Any]], fetched_at: float) -> str:
    """Store the live rows (atomically: a reader never sees half a file). Returns the path.

    Raises:
        OSError: the directory cannot be made or written.
    """
    import tempfile  # here, not at the top: it imports shutil, random, bz2, lzma...

    path = cache_path(provider, base_url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    clean = [r for r in (_checked_row(r) for r in rows) if r is not None]  # merge_live says what was left out
    body = {"schema": CACHE_SCHEMA, "provider": provider, "fetched_at": fetched_at, "rows": clean}
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".models-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
