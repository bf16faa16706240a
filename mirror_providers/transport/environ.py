"""What requests would read from the environment for a URL, read once instead of on every call.

``requests.Session.request`` scans the whole environment two or three times per call (proxies,
``NO_PROXY``, the CA bundle variables): about a quarter of a loopback call. ``Settings`` makes
the same decisions with requests' own functions (``get_environ_proxies``, the
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` rule of ``merge_environment_settings``) once per URL,
and makes them again only when one of the variables they depend on changes (checked with a few
dictionary lookups per call), so a proxy set in ``os.environ`` after the transport was built is
still honoured.

What differs from a ``requests.Session``, on purpose:

* loopback URLs never use the environment (no proxy, no CA bundle variable): a local model's
  prompts must not travel to ``HTTP_PROXY``;
* proxies given to the transport win over the environment's for their schemes (a session lets
  ``HTTPS_PROXY`` override its own ``proxies``; requests' per-request ``proxies=`` behaves as
  here); ``no_proxy`` among them is honoured as requests does;
* a variable whose name is in neither case (``Https_Proxy``) is read when the settings for a URL
  are first made, but changing it later goes unnoticed.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["Settings", "UrlSettings", "is_loopback"]

# Every variable requests' decisions for an http(s) URL depend on, in the cases people write.
_WATCHED = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
) + ("REQUEST_METHOD", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

_MAX_URLS = 512  # distinct URLs remembered before the cache starts over

_ENVIRON_WRITES = threading.Lock()  # held only around requests' own brief os.environ write


def _free_lock_in_child() -> None:
    global _ENVIRON_WRITES
    _ENVIRON_WRITES = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_free_lock_in_child)


def is_loopback(url: str) -> bool:
    """``localhost``, a name under ``.localhost``, or a loopback address (127.0.0.0/8, ::1);
    not a name that merely starts with ``127.``."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UrlSettings(NamedTuple):
    """How to send to one URL: the URL as requests prepares it, its proxies and TLS verification."""

    url: str
    proxies: dict[str, str]
    verify: bool | str
    environ: tuple[str | None, ...]  # the watched variables these were made from


class Settings:
    """Per-URL sending settings, made as ``requests.Session`` makes them and remembered.

    Args:
        verify: the transport's ``verify`` (True, a CA bundle path, or False).
        proxies: the transport's explicit proxies, or None.
    """

    def __init__(self, verify: bool | str, proxies: Mapping[str, str] | None) -> None:
        self._verify = verify
        self._proxies = dict(proxies) if proxies else {}
        self._by_url: dict[str, UrlSettings] = {}
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: a free lock (another thread may have held this one at the fork)."""
        self._lock = threading.Lock()

    def for_url(self, url: str) -> UrlSettings:
        environ = os.environ
        seen = tuple(map(environ.get, _WATCHED))
        known = self._by_url.get(url)
        if known is not None and known.environ == seen:
            return known
        made = self._make(url, seen)
        with self._lock:
            if len(self._by_url) >= _MAX_URLS:
                self._by_url.clear()
            self._by_url[url] = made
        return made

    def _make(self, url: str, seen: tuple[str | None, ...]) -> UrlSettings:
        import requests.models  # imported by the first request, not with the package
        import requests.utils

        prepared = requests.models.PreparedRequest()
        prepared.prepare_url(url, None)  # raises requests' InvalidURL / MissingSchema
        assert prepared.url is not None
        if is_loopback(url):
            return UrlSettings(prepared.url, {}, self._verify, seen)
        proxies = dict(self._proxies)
        no_proxy = proxies.get("no_proxy")
        if no_proxy is None:
            found = requests.utils.get_environ_proxies(url)
        else:
            # requests applies an explicit no_proxy by writing it into os.environ for a moment and
            # restoring it (``set_environ``): never two of ours at once, or a restore could be lost.
            with _ENVIRON_WRITES:
                found = requests.utils.get_environ_proxies(url, no_proxy=no_proxy)
        for scheme, proxy in found.items():
            proxies.setdefault(scheme, proxy)
        verify = self._verify
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        return UrlSettings(prepared.url, proxies, verify, seen)
