"""The plan of a call: which (route, model) candidates to try, in which order. Pure.

One routing table for every door (library, CLI, serve): the same request gets the same
plan wherever it came in.

1. **The chain**: the requested model, then its fallbacks (per call ``fallback_models``,
   or ``[models."NAME"] fallbacks`` in the configuration).
2. **Who serves what.** Each route speaks a vocabulary (`RouteConfig.names`): an Ollama
   route serves any local name, and a hosted name through its local counterpart; the
   DeepSeek route serves the hosted names, and local tags through their hosted
   counterpart (the catalogue's mapping); other routes serve what they declare
   (``models``, ``model_map``), and a catalogue name through its hosted counterpart
   when they map that. A name nothing connects to a third-party route never leaves the
   machine: an unknown name (a typo, ``../../etc/passwd``) is not answered by some
   default hosted model.
3. **Tiers by policy**: ``local-first`` tries private routes, then third parties;
   ``hosted-first`` the other way round; ``local-only`` (or ``local_only``) private routes
   only; ``fallback=False`` keeps to the first tier. A model that only third-party routes
   serve under its own name (``deepseek-flash``) is asked of them first, its private
   counterpart after: asking for a hosted model by name is asking for it.
4. Within a tier: each model of the chain in turn, its routes by ``rank`` (predicted first
   token, then price); configuration order breaks ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .._backends import CallSpec
from .._catalogue import Catalogue
from .._config import Policy, Settings
from .._routes import RouteConfig
from .shapes import RouteChoice

__all__ = ["Candidate", "capability_gap", "effective_policy", "plan_candidates", "serves"]


@dataclass(frozen=True)
class Candidate:
    route: RouteConfig
    model: str
    "The model as this route names it."
    thinking: bool | None
    "DeepSeek-dialect routes: the thinking switch to send; others: None (``think`` applies)."
    exact: bool
    "The route serves the requested name itself (not a counterpart)."
    requested: str
    "The chain model this candidate serves."


def _hosted_thinking(think: bool | str | None, default: bool) -> bool:
    if think is None:
        return default
    if isinstance(think, bool):
        return think
    return True  # a level ("low"/"high"/…) means thinking on


def _hosted_counterpart(
    requested: str, catalogue: Catalogue, settings: Settings, think: bool | str | None
) -> tuple[str, bool] | None:
    """(hosted model, thinking) for a name, or None when nothing connects it to one."""
    if requested in catalogue.hosted or requested in catalogue.retired_hosted:
        default = (
            catalogue.hosted[requested].thinking_default if requested in catalogue.hosted else True
        )
        return requested, _hosted_thinking(think, default)
    mapped = catalogue.hosted_for(requested, settings.hosted_model_map)
    if mapped is None:
        return None
    hosted, thinking_default = mapped
    if settings.hosted_model:
        hosted = settings.hosted_model
    return hosted, _hosted_thinking(think, thinking_default)


def serves(
    route: RouteConfig,
    requested: str,
    *,
    catalogue: Catalogue,
    settings: Settings,
    think: bool | str | None,
) -> Candidate | None:
    """How ``route`` serves ``requested``, or None when it does not."""
    own = route.own_model(requested)
    if route.names == "local":
        if own is not None:
            return Candidate(route, own, None, True, requested)
        is_hosted_name = requested in catalogue.hosted or requested in catalogue.retired_hosted
        if is_hosted_name:
            counterpart = _hosted_counterpart(requested, catalogue, settings, think)
            thinking = counterpart[1] if counterpart else True
            local = catalogue.local_for(requested, thinking)
            if route.models and route.own_model(local) is None:
                return None
            return Candidate(route, route.own_model(local) or local, None, False, requested)
        if route.models:
            return None  # the route declared what it serves, and this is not among it
        return Candidate(route, requested, None, True, requested)
    if own is not None:
        return Candidate(route, own, None, True, requested)
    counterpart = _hosted_counterpart(requested, catalogue, settings, think)
    if counterpart is None:
        return None
    hosted, thinking = counterpart
    if route.names == "hosted":
        exact = hosted == requested
        return Candidate(
            route, hosted, thinking if route.dialect == "deepseek" else None, exact, requested
        )
    mapped = route.own_model(hosted)
    if mapped is None:
        return None
    return Candidate(route, mapped, None, False, requested)


def effective_policy(
    policy: Policy, local_only: bool, exact_private: bool, exact_third_party: bool
) -> Policy:
    """The policy a call runs under (see the module docstring, point 3)."""
    if local_only or policy == "local-only":
        return "local-only"
    if policy == "local-first" and exact_third_party and not exact_private:
        return "hosted-first"
    return policy


def plan_candidates(
    requested: str,
    routes: Sequence[RouteConfig],
    *,
    catalogue: Catalogue,
    settings: Settings,
    policy: Policy,
    local_only: bool,
    think: bool | str | None,
    fallback_models: Sequence[str] = (),
    rank: Callable[[Candidate], tuple[float, ...]] | None = None,
    models: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Candidate], Policy]:
    """Every (route, model) candidate for a call, in order, and the policy that ordered them."""
    chain = [requested]
    configured = (
        models if models is not None else {name: m.fallbacks for name, m in settings.models.items()}
    )
    for name in fallback_models or configured.get(requested, ()):
        if name not in chain:
            chain.append(name)
    served: list[Candidate] = []
    for name in chain:
        for route in routes:
            candidate = serves(route, name, catalogue=catalogue, settings=settings, think=think)
            if candidate is not None:
                served.append(candidate)
    first = [c for c in served if c.requested == requested and c.exact]
    mode = effective_policy(
        policy,
        local_only,
        exact_private=any(c.route.private for c in first),
        exact_third_party=any(not c.route.private for c in first),
    )
    if mode == "local-only":
        tiers = [True]
    elif mode == "hosted-first":
        tiers = [False, True] if settings.fallback else [False]
    else:
        tiers = [True, False] if settings.fallback else [True]
    ordered: list[Candidate] = []
    seen: set[tuple[str, str]] = set()
    for private in tiers:
        for name in chain:
            group = [c for c in served if c.requested == name and c.route.private is private]
            if rank is not None:
                group.sort(key=rank)
            for candidate in group:
                key = (candidate.route.name, candidate.model)
                if key not in seen:
                    seen.add(key)
                    ordered.append(candidate)
    return ordered, mode


def capability_gap(choice: RouteChoice, spec: CallSpec) -> str | None:
    """Why this route cannot serve this call at all (None: it can)."""
    caps = choice.backend.capabilities
    if spec.has_images() and not caps.images:
        return f"images cannot go to the {choice.kind} route ({choice.route})"
    if spec.tools and not caps.tools:
        return f"the {choice.kind} route {choice.route} has no tool calling"
    if spec.operation == "generate" and spec.suffix and not caps.fim:
        return f"the {choice.kind} route {choice.route} has no fill-in-the-middle (suffix=)"
    return None
