"""The provider registry: spec strings, create_provider, list_models, register_provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror_providers import catalog
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.catalog import PROVIDERS, create_provider, list_models, parse_spec, register_provider
from mirror_providers.errors import ConfigurationError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.types import ModelInfo

from .parrot import ParrotProvider


@pytest.fixture
def registry() -> Iterator[None]:
    """Registrations made in a test are undone after it."""
    before = dict(PROVIDERS)
    yield
    PROVIDERS.clear()
    PROVIDERS.update(before)


def test_the_built_in_vendors_in_order_of_preference() -> None:
    assert list(PROVIDERS) == ["openai", "anthropic", "ollama"]
    assert PROVIDERS["openai"] is OpenAIProvider and PROVIDERS["ollama"] is OllamaProvider


@pytest.mark.parametrize(("spec", "want"), [
    ("openai", ("openai", None)),
    ("openai:gpt-4o", ("openai", "gpt-4o")),
    ("ollama:llama3.1:70b", ("ollama", "llama3.1:70b")),  # only the first colon separates
    ("  anthropic:haiku ", ("anthropic", "haiku")),
    ("openai:", ("openai", None)),
])
def test_parse_spec(spec: str, want: tuple[str, str | None]) -> None:
    assert parse_spec(spec) == want


@pytest.mark.parametrize("spec", ["", "gpt-4o", "OpenAI:gpt-4o", "azure:gpt-4o", ":gpt-4o"])
def test_an_unknown_provider_is_named_with_the_known_ones(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_spec(spec)
    assert repr(spec.strip().partition(":")[0]) in str(info.value)
    assert "anthropic, ollama, openai" in str(info.value)


def test_a_spec_that_is_not_text() -> None:
    with pytest.raises(ConfigurationError, match="a provider spec is text.*got int"):
        parse_spec(5)  # type: ignore[arg-type]


def test_create_provider_builds_the_vendor_with_its_model() -> None:
    p = create_provider("anthropic:claude-3-5-haiku-20241022", api_key="sk-ant-x")
    assert isinstance(p, AnthropicProvider) and p.model_name == "claude-3-5-haiku-20241022"
    q = create_provider("openai", model="gpt-4o", api_key="sk-x")
    assert isinstance(q, OpenAIProvider) and q.model_name == "gpt-4o"
    assert create_provider("openai:gpt-4o", model="gpt-4o", api_key="sk-x").model_name == "gpt-4o"  # same twice


def test_create_provider_refuses_two_models_and_unknown_arguments() -> None:
    with pytest.raises(ConfigurationError, match="model given twice: 'gpt-4o' in the spec and 'gpt-4o-mini'"):
        create_provider("openai:gpt-4o", model="gpt-4o-mini", api_key="sk-x")
    with pytest.raises(ConfigurationError, match=r"takes no argument\(s\) \['num_ctx'\]; it takes .*'organization'"):
        create_provider("openai", api_key="sk-x", num_ctx=4096)


def test_list_models_every_row_or_one_vendor() -> None:
    rows = list_models()
    assert {pid for pid, _ in rows} == set(PROVIDERS)
    assert all(isinstance(info, ModelInfo) for _, info in rows)
    assert len(rows) == sum(len(cls.MODELS) for cls in PROVIDERS.values())
    assert [info for _, info in list_models("ollama")] == list(OllamaProvider.MODELS)
    with pytest.raises(ConfigurationError, match="unknown provider 'nope'"):
        list_models("nope")


def test_each_vendor_finds_its_models_by_id_and_alias() -> None:
    for cls in PROVIDERS.values():
        for info in cls.MODELS:
            assert cls.find_model(info.id) is info
            for alias in info.aliases:
                assert cls.find_model(alias) is info
        assert cls.find_model("no-such-model-anywhere") is None


def test_registered_vendor_is_known_everywhere(registry: None) -> None:
    assert register_provider(ParrotProvider) is ParrotProvider
    assert register_provider(ParrotProvider) is ParrotProvider  # again: a no-op
    assert list(PROVIDERS)[-1] == "parrot"
    p = create_provider("parrot:polly-1", api_key="pk-x")
    assert isinstance(p, ParrotProvider) and p.model_name == "polly-1"
    assert list_models("parrot") == [("parrot", info) for info in ParrotProvider.MODELS]
    assert "PARROT_API_KEY" in ParrotProvider.environment_variables()


def test_register_provider_refuses_what_it_cannot_use(registry: None) -> None:
    with pytest.raises(ConfigurationError, match="takes an HttpProvider subclass"):
        register_provider(dict)  # type: ignore[type-var]

    class Impostor(OpenAIProvider):
        pass

    with pytest.raises(ConfigurationError, match="provider id 'openai' is taken by OpenAIProvider"):
        register_provider(Impostor)
    for bad in ["", "Has Caps", "two words", "x:y"]:
        cls = type("Bad", (ParrotProvider,), {"provider_id": bad})
        with pytest.raises(ConfigurationError, match="must be a lowercase word"):
            register_provider(cls)
    assert "parrot" not in PROVIDERS and set(PROVIDERS) == {"openai", "anthropic", "ollama"}


def test_the_registry_fixture_really_restores(registry: None) -> None:
    # A guard for the tests above: the module-level dict is the one create_provider reads.
    assert catalog.PROVIDERS is PROVIDERS


def test_the_cli_offers_a_vendor_registered_after_it_was_imported(registry: None) -> None:
    from mirror_providers import cli

    register_provider(ParrotProvider)
    assert "parrot" in cli.choices()
    assert "PARROT_API_KEY" in cli.no_provider()
    assert cli._parser().parse_args(["generate", "--provider", "parrot", "hi"]).provider == "parrot"


@pytest.mark.parametrize("cls", ["openai.OpenAIProvider", "anthropic.AnthropicProvider", "local.OllamaProvider",
                                 "embedded.LocalProvider"])
def test_constructors_show_every_argument(cls: str) -> None:
    """help() and IDEs see api_key, base_url, timeout... rather than **kwargs."""
    import importlib
    import inspect

    module, name = cls.split(".")
    klass = getattr(importlib.import_module(f"mirror_providers.{module}"), name)
    params = inspect.signature(klass).parameters
    assert {"model", "api_key", "base_url", "timeout", "max_retries", "transport", "deadline_s"} <= set(params)
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
    assert "base_url: 'str | None' = None" in str(inspect.signature(klass))
