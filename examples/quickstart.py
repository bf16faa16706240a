"""Stream an answer from an OpenAI-compatible server (OpenAI itself, Ollama's /v1, vLLM, llama.cpp...).

    OPENAI_BASE_URL=http://localhost:11434/v1 python examples/quickstart.py --model llama3.1 "Why is the sky blue?"

The key comes from OPENAI_API_KEY (needed only for api.openai.com). Exit status 1 on a library
error, with the error's one-line description on stderr.
"""

from __future__ import annotations

import argparse
import sys

from mirror_providers.base import ProviderError
from mirror_providers.openai import OpenAIProvider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="Say hello in five words.")
    parser.add_argument("--model", default=None, help="model id (default: gpt-4o-mini)")
    parser.add_argument("--base-url", default=None, help="server root ending in /v1 (default: OPENAI_BASE_URL)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--max-retries", type=int, default=2, help="retries of connection errors, 429 and 5xx")
    args = parser.parse_args(argv)
    try:
        with OpenAIProvider(model=args.model, base_url=args.base_url, max_retries=args.max_retries) as llm:
            usage = None
            for chunk in llm.stream_sync(args.prompt, max_tokens=args.max_tokens):
                print(chunk.content, end="", flush=True)
                usage = chunk.usage or usage
            print()
            if usage:
                print(f"[{llm.model_name}: {usage.input_tokens} in, {usage.output_tokens} out]", file=sys.stderr)
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
