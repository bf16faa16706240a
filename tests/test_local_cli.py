"""``--provider local`` and ``LocalProvider``: a running ``serve`` is found and used, another model
name or an input the model cannot take is refused before anything is sent, results say
``"local"``, and no OpenAI key or base URL from the environment goes to the local server.

The real server (``mirror-providers serve`` with the embedded model) is in
``tests/integration/test_serve.py``; here a loopback fake stands where it would be."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirror_providers.cli import main
from mirror_providers.embedded import LOCAL_MODEL, MODEL_ALIAS, LocalProvider, running_server
from mirror_providers.errors import ConfigurationError, ValidationError
from mirror_providers.types import ContentPart, Message, Tool

from .server import FakeServer, Received, add_openai_routes

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def as_local_server(server: FakeServer, models: tuple[str, ...] = (MODEL_ALIAS,)) -> None:
    """The fake answers as llama.cpp's server with the embedded model does."""
    add_openai_routes(server, text="The sky scatters blue light.")
    server.route("GET", "/health", lambda r, w: w.json(200, {"status": "ok"}))
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"object": "list", "data": [
        {"id": m, "object": "model"} for m in models]}))


def record(model_cache: Path, base_url: str, pid: int | None = None) -> None:
    """What ``serve`` writes for other processes."""
    (model_cache / "local-servers").mkdir(parents=True, exist_ok=True)
    (model_cache / "local-servers" / f"{os.getpid() if pid is None else pid}.json").write_text(json.dumps(
        {"pid": os.getpid() if pid is None else pid, "base_url": base_url, "model": MODEL_ALIAS}))


def chats(server: FakeServer) -> list[Received]:
    return [r for r in server.received if r.path == "/v1/chat/completions"]


def test_a_running_server_is_found(server: FakeServer, model_cache: Path) -> None:
    as_local_server(server)
    assert running_server() is None  # no record
    record(model_cache, server.url)
    assert running_server() == server.url


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("case", ["dead process", "other model", "garbage", "not loopback", "no server"])
def test_a_record_that_does_not_lead_to_the_model_is_ignored(case: str, server: FakeServer, model_cache: Path) -> None:
    as_local_server(server, models=("llama3",) if case == "other model" else (MODEL_ALIAS,))
    if case == "dead process":
        record(model_cache, server.url, pid=dead_pid())
    elif case == "garbage":
        (model_cache / "local-servers").mkdir(parents=True, exist_ok=True)
        (model_cache / "local-servers" / "1.json").write_text('{"pid": "x", "base_url": 3')
    elif case == "not loopback":
        record(model_cache, server.url.replace("127.0.0.1", "localhost.example"))
    elif case == "no server":
        with FakeServer() as gone:
            url = gone.url
        record(model_cache, url)
    else:
        record(model_cache, server.url)
    assert running_server(timeout_s=1.0) is None


def test_the_newest_of_two_live_servers_is_used_and_a_dead_record_goes(server: FakeServer,
                                                                       model_cache: Path) -> None:
    as_local_server(server)
    with FakeServer() as older:
        as_local_server(older)
        record(model_cache, older.url, pid=1)  # pid 1 is alive: an older serve
        os.utime(model_cache / "local-servers" / "1.json", (1, 1))
        record(model_cache, server.url)
        assert running_server() == server.url
        (model_cache / "local-servers" / f"{os.getpid()}.json").unlink()  # the newer one stopped
        assert running_server() == older.url  # the other is still found
    gone = dead_pid()
    record(model_cache, server.url, pid=gone)
    assert running_server() is None  # the only record names a dead process
    assert not (model_cache / "local-servers" / f"{gone}.json").exists()  # a dead server's record is removed


def test_generate_uses_the_running_server_and_says_local(server: FakeServer, model_cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    as_local_server(server)
    record(model_cache, server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-local-server")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # not followed by the local provider
    code, out, err = run("generate", "Why is the sky blue?", "--provider", "local", "--no-stream", "--json")
    assert code == 0, err
    assert json.loads(out)["provider"] == "local" and "starting the local model" not in err
    code, out, err = run("generate", "Why is the sky blue?", "--provider", "local")
    assert code == 0 and out == "The sky scatters blue light.\n"
    assert "tiny base model on this machine" in err and "mirror-providers serve" in err  # what to try next
    sent = chats(server)
    assert len(sent) == 2 and all("authorization" not in {k.lower() for k in r.headers} for r in sent)


def test_json_chunks_say_local_too(server: FakeServer, model_cache: Path) -> None:
    as_local_server(server)
    record(model_cache, server.url)
    code, out, _ = run("generate", "Hi", "--provider", "local", "--json")
    assert code == 0 and {json.loads(line)["provider"] for line in out.splitlines()} == {"local"}


def test_another_model_is_refused_before_anything_starts(server: FakeServer, model_cache: Path) -> None:
    as_local_server(server)
    record(model_cache, server.url)
    code, out, err = run("generate", "Hi", "--provider", "local", "--model", "nonexistent")
    assert code == 2 and out == "" and "has one model, gemma-3-270m; there is no 'nonexistent'" in err
    assert "starting" not in err and chats(server) == []
    with pytest.raises(ConfigurationError, match="no 'llama3.1' here"):
        LocalProvider("llama3.1", base_url=server.url + "/v1")
    assert LocalProvider(MODEL_ALIAS, base_url=server.url + "/v1").model_name == MODEL_ALIAS


def test_an_image_or_a_tool_is_refused_before_sending(server: FakeServer) -> None:
    as_local_server(server)
    llm = LocalProvider(base_url=server.url + "/v1")
    picture = Message.user((ContentPart.from_text("What is this?"), ContentPart.image_url("https://example.com/a.png")))
    with pytest.raises(ValidationError, match="gemma-3-270m does not accept images"):
        llm.generate_sync([picture])
    with pytest.raises(ValidationError, match="gemma-3-270m does not support tools"):
        llm.generate_sync("Weather?", tools=[Tool("weather", "the weather", {"type": "object"})])
    assert chats(server) == [] and llm.get_stats().status != "degraded" and llm.get_stats().errors == 0
    caps = llm.capabilities
    assert (caps.supports_vision, caps.supports_function_calling, caps.tier.value) == (False, False, "local")


def test_models_lists_the_local_model() -> None:
    code, out, _ = run("models", "--provider", "local")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["local", MODEL_ALIAS]
    code, out, _ = run("models", "--provider", "local", "--json")
    assert json.loads(out) == [{"provider": "local", **LOCAL_MODEL.to_dict(), "status": "active"}]
    code, out, _ = run("models")
    assert code == 0 and any(line.split()[:2] == ["local", MODEL_ALIAS] for line in out.splitlines())


def test_create_provider_knows_local(server: FakeServer, model_cache: Path) -> None:
    from mirror_providers import create_provider

    as_local_server(server)
    record(model_cache, server.url)
    llm = create_provider("local")
    assert isinstance(llm, LocalProvider) and not llm.started_server and llm.base_url == server.url + "/v1"
    assert llm.generate_sync("Hi").provider == "local"
    with pytest.raises(ConfigurationError, match="no 'gpt-4o' here"):
        create_provider("local:gpt-4o")


def test_help_shows_examples_and_exit_codes() -> None:
    proc = subprocess.run([sys.executable, "-m", "mirror_providers", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    assert 'mirror-providers generate "Why is the sky blue?" --provider local' in proc.stdout
    assert "exit status:" in proc.stdout and "4 every provider of a fallback failed" in proc.stdout
    assert "serve" in proc.stdout


def test_a_taken_port_is_refused_naming_it(server: FakeServer) -> None:
    from mirror_providers.embedded import LocalModelServer

    port = int(server.url.rsplit(":", 1)[1])
    pytest.importorskip("xllamacpp")
    with pytest.raises(ConfigurationError, match=f"port {port} on 127.0.0.1 is in use"):
        LocalModelServer(port=port).start()


def test_a_forked_child_leaves_its_parents_server_alone(server: FakeServer) -> None:
    import mirror_providers.embedded as embedded

    as_local_server(server)
    llm = LocalProvider(base_url=server.url + "/v1")
    stopped: list[int] = []

    class Started:  # stands for the server the provider started (its threads are in this process)
        def stop(self) -> None:
            stopped.append(os.getpid())

    started = Started()
    llm._server = started  # type: ignore[assignment]
    embedded._OWNED.add(started)  # type: ignore[arg-type]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a worker of a pre-fork server, ending normally
        try:
            llm.close()
            embedded._stop_owned()  # what its exit runs
            os.write(write, f"{len(stopped)} {len(embedded._OWNED)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 100) == b"0 0" and os.waitpid(pid, 0)[1] == 0
    llm.close()
    assert stopped == [os.getpid()]  # the parent does stop it
    embedded._OWNED.discard(started)  # type: ignore[arg-type]
