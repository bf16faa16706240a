"""What a known model accepts: a request checked (or fitted) against its catalog row.

The rules come from the row (``rejects``, ``rejects_while_reasoning``, ``rejects_together``,
``reasoning``, ``reasoning_levels``), never from the model's name, so a new model is one row of
``data/models.json``. A request that breaks a rule is refused before sending with a
``ValidationError`` saying why; a provider made with ``drop_params=True`` drops the offending
options instead, with a ``ParameterDroppedWarning`` each time.

One fitting is silent and documented: when the caller did not say ``reasoning=`` and gave an
option the model takes only with reasoning off (OpenAI's GPT-5.4+ and GPT-6 Sol/Luna take tools
and ``temperature`` on Chat Completions only with ``reasoning_effort: "none"``), the request is
sent with reasoning off, the only form the model accepts it in.
"""

from __future__ import annotations

import dataclasses
import warnings

from ._lazy import dataclass
from .request import GenerateRequest
from .types import ModelInfo

__all__ = ["Conflict", "ParameterDroppedWarning", "accepted_levels", "conflicts", "fit", "given_params",
           "reasoning_is_on"]


class ParameterDroppedWarning(UserWarning):
    """An option the model does not accept was dropped (the provider has ``drop_params=True``)."""


@dataclass(frozen=True)
class Conflict:
    """One option the model refuses: which, and why (a sentence naming the model)."""

    param: str
    reason: str
    droppable: bool = True


def given_params(request: GenerateRequest) -> set[str]:
    """The rule names of what this request asks for."""
    names = set(request.extra)
    if request.temperature is not None:
        names.add("temperature")
    if request.top_p is not None:
        names.add("top_p")
    if request.tools:
        names.add("tools")
    if request.tool_choice not in (None, "auto", "none"):
        names.add("forced_tool_choice")
    if request.messages and request.messages[-1].role == "assistant":
        names.add("prefill")
    return names


def accepted_levels(info: ModelInfo) -> tuple[str, ...]:
    """The model's reasoning levels in our words (OpenAI's ``"none"`` is ``"off"``); empty when
    the catalog does not list them."""
    return tuple("off" if level == "none" else level for level in info.reasoning_levels)


def _can_turn_off(info: ModelInfo) -> bool:
    return info.reasoning is None or "off" in accepted_levels(info)


def reasoning_is_on(info: ModelInfo, level: str | None) -> bool:
    """Whether the model reasons for a request asking ``level`` (None: the model's default)."""
    if info.reasoning is None:
        return False
    if level is None:
        default = info.reasoning_default
        if default is None:  # not documented: a reasoning model is taken to reason by default
            return True
        level = "off" if default == "none" else default
    return level != "off"


def fit(info: ModelInfo, request: GenerateRequest) -> GenerateRequest:
    """The request with reasoning turned off when the caller did not choose and an option given
    is one the model takes only with reasoning off (and reasoning can be turned off)."""
    if request.reasoning is not None or not reasoning_is_on(info, None) or not _can_turn_off(info):
        return request  # the caller chose, or the model does not reason unless asked
    if given_params(request) & set(info.rejects_while_reasoning):
        return dataclasses.replace(request, reasoning="off")
    return request


def conflicts(info: ModelInfo, request: GenerateRequest) -> list[Conflict]:
    """Every option of ``request`` (already ``fit``) the model refuses, in a stable order."""
    out: list[Conflict] = []
    level = request.reasoning
    if level is not None and level != "off" and info.reasoning is None:
        out.append(Conflict("reasoning", f"{info.id} does not reason: reasoning={level!r} cannot be sent"))
    elif level is not None and info.reasoning is not None:
        levels = accepted_levels(info)
        if level == "off" and levels and "off" not in levels:
            out.append(Conflict("reasoning", f"{info.id} always reasons: reasoning cannot be turned off "
                                             f"(it takes {', '.join(levels)})"))
        elif level not in ("on", "off") and levels and level not in levels and info.reasoning != "think":
            # (an on/off model takes any level as "on")
            out.append(Conflict("reasoning", f"{info.id} takes reasoning {', '.join(repr(x) for x in levels)}, "
                                             f"not {level!r}"))
    asked = given_params(request)
    on = reasoning_is_on(info, level)
    for param in sorted(asked):
        if param in info.rejects:
            out.append(Conflict(param, f"{info.id} does not accept {_describe(param, info)}",
                                droppable=param != "prefill"))
        elif on and param in info.rejects_while_reasoning:
            why = ("reasoning is always on" if not _can_turn_off(info)
                   else "pass reasoning='off' to send it")
            out.append(Conflict(param, f"{info.id} accepts {_describe(param, info)} only with reasoning off ({why})"))
    together = set(info.rejects_together)
    if together and together <= asked:
        names = sorted(together)
        out.append(Conflict(names[-1], f"{info.id} accepts {' or '.join(names)}, not both"))
    return out


_DESCRIPTIONS = {
    "tools": "tools on this API",
    "prefill": "an assistant message last (prefill)",
    "forced_tool_choice": "a forced tool_choice ('required' or a tool name; use 'auto')",
}


def _describe(param: str, info: ModelInfo) -> str:
    if param == "tools" and info.provider == "openai":
        return "tools on Chat Completions (its tools need the Responses API)"
    return _DESCRIPTIONS.get(param, param)


def drop(request: GenerateRequest, found: list[Conflict], model: str) -> GenerateRequest:
    """The request without the options in ``found``, warning once for each."""
    changes: dict[str, object] = {}
    extra = dict(request.extra)
    for conflict in found:
        param = conflict.param
        if param in ("temperature", "top_p", "reasoning"):
            changes[param] = None
        elif param == "tools":
            changes.update(tools=(), tool_choice=None, parallel_tool_calls=None)
        elif param == "forced_tool_choice":
            changes["tool_choice"] = None
        else:
            extra.pop(param, None)
        warnings.warn(f"dropped {param} for {model}: {conflict.reason}", ParameterDroppedWarning, stacklevel=4)
    if extra != request.extra:
        changes["extra"] = extra
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]
