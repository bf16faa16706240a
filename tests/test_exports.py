"""The public surface: sorted __all__, every name importable, the original design's paths."""

from __future__ import annotations

import subprocess
import sys

import mirror_providers


def test_all_is_sorted_and_importable() -> None:
    assert mirror_providers.__all__ == sorted(mirror_providers.__all__)
    for name in mirror_providers.__all__:
        assert getattr(mirror_providers, name) is not None, name
    assert set(dir(mirror_providers)) >= set(mirror_providers.__all__)


def test_original_import_paths() -> None:
    from mirror_providers import pooling  # noqa: F401
    from mirror_providers.base import (  # noqa: F401
        AuthenticationError,
        ModelNotFoundError,
        Provider,
        ProviderError,
        RateLimitError,
    )
    from mirror_providers.openai import OpenAIProvider  # noqa: F401

    assert issubclass(RateLimitError, ProviderError)


def test_base_all_sorted_and_complete() -> None:
    from mirror_providers import base

    assert base.__all__ == sorted(base.__all__)
    for name in base.__all__:
        assert hasattr(base, name)


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError):
        mirror_providers.NoSuchThing  # noqa: B018


def test_import_is_cheap() -> None:
    """No vendor module, no dataclasses-json, no thread pool, not even requests at import time."""
    code = (
        "import sys, threading, mirror_providers;"
        "bad = [m for m in ('mirror_providers.providers.openai', 'dataclasses_json', 'marshmallow',"
        " 'requests', 'mirror_providers.transport') if m in sys.modules];"
        "print(bad, threading.active_count(), mirror_providers.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "[]" and out[1] == "1"


def test_provider_import_does_not_load_dataclasses_json() -> None:
    code = ("import sys; from mirror_providers.openai import OpenAIProvider;"
            "print('dataclasses_json' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_the_lists_of_public_names_agree() -> None:
    """The lazy table, the type checker's imports, ``__all__`` and ``base``'s errors are one list."""
    import ast
    from pathlib import Path

    from mirror_providers import _EXPORTS, base, errors

    tree = ast.parse(Path(mirror_providers.__file__).read_text())
    checked = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.If)
               for sub in ast.walk(node) if isinstance(sub, ast.ImportFrom) for alias in sub.names}
    assert set(_EXPORTS) == checked, (set(_EXPORTS) ^ checked)
    assert set(mirror_providers.__all__) == {*_EXPORTS, "__version__"}
    assert errors.MirrorProvidersError is errors.ProviderError  # one root class, under its two documented names
    error_names = {n for n in errors.__all__ if n[0].isupper()}
    assert error_names <= set(mirror_providers.__all__), error_names - set(mirror_providers.__all__)
    assert error_names <= set(base.__all__), error_names - set(base.__all__)
