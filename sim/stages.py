"""kwok-style stages: a pod's life on the simulated kubelet, written as data.

A Stage is `selector → delay → next`. The kubelet evaluates the stages whenever a pod
changes; the stages that match (highest `priority` first, `weight` picking among equals)
start a timer, and when it fires the stage's `next` is applied (sim/podstatus.py), which
changes the pod so that the following stage matches. A profile is a small YAML file of
stages (sim/profiles/*.yaml, or any path): see sim/profiles/general.yaml for the format.

Selector fields (all must match):
  phase                 status.phase (Pending when unset)
  container             none | waiting:<reason> | running | terminated — the pod's
                        containers summarised (waiting wins over running over terminated)
  deleting              true | false (metadata.deletionTimestamp set)
  image                 every container image (`matches`: any matches; `not_matches`: none)
  labels.<key>, annotations.<key>, condition.<Type> (its status)
Matchers: a value (equal), a list (one of; null = absent), or one of {in, not_in, exists,
matches, not_matches}. `$name` in a matcher is replaced by the profile's `vars`.

Delay: seconds or a duration (`150ms`, `2s`, `1m`), or a mapping summing `base`, uniform
`jitter`, a log-normal `median`/`sigma`, a duration read from `annotation` (else `default`),
and `backoff` doubled each time the stage fired for the pod; `max` caps it. A list of
delays is their sum.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from kubequeue.errors import ConfigError

KubeletMode = Literal["timed", "process"]
PROFILE_DIR = "profiles"
_ABSENT = None
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_TERMINAL = frozenset({"Succeeded", "Failed"})


class StageError(ConfigError):
    """A profile file is invalid; the message names the file and the stage."""


def parse_duration(value: object) -> float:
    """Seconds from `2`, `1.5`, `"150ms"`, `"2s"`, `"1m"`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0 or math.isnan(value):
            raise ValueError(f"not a duration: {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 2, 1.5s, 150ms, 1m)")
    return float(match.group(1)) * _UNIT[match.group(2)]


# -- selectors ----------------------------------------------------------------------------
def container_summary(pod: Mapping[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    if not statuses:
        return "none"
    running = False
    for cs in statuses:
        state = cs.get("state") or {}
        if "waiting" in state:
            return f"waiting:{state['waiting'].get('reason', '')}"
        running = running or "running" in state
    return "running" if running else "terminated"


Facts = dict[str, str]


def pod_facts(pod: Mapping[str, Any]) -> Facts:
    """The fields most selectors test, computed once per evaluation of a pod."""
    return {
        "phase": str((pod.get("status") or {}).get("phase") or "Pending"),
        "container": container_summary(pod),
        "deleting": "true" if pod["metadata"].get("deletionTimestamp") else "false",
    }


def _field(pod: Mapping[str, Any], name: str, key: str) -> str | None:
    if name in ("labels", "annotations"):
        return (pod["metadata"].get(name) or {}).get(key)
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == key:
            return str(cond.get("status"))
    return _ABSENT


@dataclass(frozen=True)
class Match:
    """One selector requirement on one field of the pod."""

    name: str  # phase | container | deleting | image | labels | annotations | condition
    key: str = ""
    op: str = "in"  # in | not_in | exists | matches | not_matches
    values: tuple[str | None, ...] = ()
    pattern: re.Pattern[str] | None = None
    _images: dict[tuple[str, str], bool] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, pod: Mapping[str, Any], facts: Facts | None = None) -> bool:
        if self.name in _FACTS:
            return self._one((facts or pod_facts(pod))[self.name], self.op)
        if self.name == "image":  # any container (not_matches: none)
            images = [c.get("image", "") for c in pod.get("spec", {}).get("containers", ())]
            if self.op == "not_matches":
                return not any(self._image(v, "matches") for v in images)
            return any(self._image(v, self.op) for v in images)
        return self._one(_field(pod, self.name, self.key), self.op)

    def _image(self, image: str, op: str) -> bool:
        # Pods of one workload share their images: a regex search per image, not per pod.
        cached = self._images.get((image, op))
        if cached is None:
            if len(self._images) > 4096:
                self._images.clear()
            cached = self._images[(image, op)] = self._one(image, op)
        return cached

    def _one(self, got: str | None, op: str) -> bool:
        if op == "in":
            return got in self.values
        if op == "not_in":
            return got not in self.values
        if op == "exists":
            return (got is not None) == (self.values == ("true",))
        matched = got is not None and self.pattern is not None and bool(self.pattern.search(got))
        return matched if op == "matches" else not matched


_FACTS = ("phase", "container", "deleting")
_FIELDS = (*_FACTS, "image")
_KEYED = ("labels", "annotations", "condition")
_OPS = ("in", "not_in", "exists", "matches", "not_matches")


def _scalar(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_match(path: str, spec: object, variables: Mapping[str, str]) -> Match:
    name, _, key = path.partition(".")
    if not ((name in _FIELDS and not key) or (name in _KEYED and key)):
        fields = ", ".join([*_FIELDS, *(f"{k}.<key>" for k in _KEYED)])
        raise ValueError(f"unknown selector field {path!r} (fields: {fields})")

    def sub(v: object) -> str | None:
        text = _scalar(v)
        if text is not None and text.startswith("$"):
            if text[1:] not in variables:
                raise ValueError(f"unknown variable {text} (vars: {sorted(variables)})")
            return variables[text[1:]]
        return text

    if isinstance(spec, list):
        return Match(name, key, "in", tuple(sub(v) for v in spec))
    if not isinstance(spec, dict):
        return Match(name, key, "in", (sub(spec),))
    if len(spec) != 1 or next(iter(spec)) not in _OPS:
        raise ValueError(f"{path}: a matcher is a value, a list or one of {{{', '.join(_OPS)}}}")
    op, arg = next(iter(spec.items()))
    if op in ("matches", "not_matches"):
        return Match(name, key, op, pattern=re.compile(str(sub(arg))))
    if op == "exists":
        return Match(name, key, op, (_scalar(bool(arg)),))
    args = arg if isinstance(arg, list) else [arg]
    return Match(name, key, op, tuple(sub(v) for v in args))


# -- delays -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delay:
    base: float = 0.0
    jitter: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    annotation: str = ""
    default: float = 0.0
    backoff: float = 0.0
    max: float = math.inf

    def seconds(self, pod: Mapping[str, Any], rng: random.Random, fired: int = 0) -> float:
        total = self.base + self.backoff * (2**fired)
        if self.jitter:
            total += rng.uniform(0.0, self.jitter)
        if self.median:
            total += self.median * math.exp(rng.gauss(0.0, self.sigma))
        if self.annotation:
            raw = (pod["metadata"].get("annotations") or {}).get(self.annotation)
            try:
                total += self.default if raw is None else parse_duration(raw)
            except ValueError:
                total += self.default
        return min(total, self.max)


def parse_delay(spec: object) -> tuple[Delay, ...]:
    if isinstance(spec, list):
        return tuple(d for part in spec for d in parse_delay(part))
    if not isinstance(spec, dict):
        return (Delay(base=parse_duration(spec or 0)),)
    known = {f for f in Delay.__dataclass_fields__}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown delay keys {sorted(unknown)} (keys: {sorted(known)})")
    values = {k: (str(v) if k == "annotation" else parse_duration(v)) for k, v in spec.items()}
    return (Delay(**values),)  # type: ignore[arg-type]


# -- stages and profiles ------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    name: str
    selector: tuple[Match, ...]
    delay: tuple[Delay, ...] = ()
    next: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    priority: int = 0
    kubelet: Literal["any", "timed", "process"] = "any"
    # whether the delay backs off, i.e. the kubelet must count how often the stage fired
    backs_off: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backs_off", any(d.backoff for d in self.delay))

    def matches(
        self, pod: Mapping[str, Any], mode: KubeletMode, facts: Facts | None = None
    ) -> bool:
        if self.kubelet != "any" and self.kubelet != mode:
            return False
        facts = facts or pod_facts(pod)
        return all(m(pod, facts) for m in self.selector)

    def accepts(self, facts: Facts) -> bool:
        """Whether the selector's phase/container/deleting requirements hold."""
        return all(m._one(facts[m.name], m.op) for m in self.selector if m.name in _FACTS)

    def others(self) -> tuple[Match, ...]:
        """The requirements on anything but phase/container/deleting."""
        return tuple(m for m in self.selector if m.name not in _FACTS)

    def seconds(self, pod: Mapping[str, Any], rng: random.Random, fired: int = 0) -> float:
        if len(self.delay) == 1:
            return self.delay[0].seconds(pod, rng, fired)
        return sum(d.seconds(pod, rng, fired) for d in self.delay)


@dataclass(frozen=True)
class Profile:
    name: str
    stages: tuple[Stage, ...]
    # (phase, container, deleting) -> the stages whose requirements on those hold, with
    # their other requirements: a pod is checked against the two or three stages that can
    # match it, not all of them (this runs on every pod change).
    _index: dict[tuple[str, ...], tuple[tuple[Stage, tuple[Match, ...]], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def matching(self, pod: Mapping[str, Any], mode: KubeletMode) -> list[Stage]:
        """The stages that may fire now: those of the highest priority among the matches."""
        # This runs on every pod change: plain loops, no intermediate facts dict.
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        deleting = "true" if pod["metadata"].get("deletionTimestamp") else "false"
        key = (str(phase), container_summary(pod), deleting)
        candidates = self._index.get(key)
        if candidates is None:
            facts = dict(zip(_FACTS, key, strict=True))
            fit = [(s, s.others()) for s in self.stages if s.accepts(facts)]
            candidates = self._index[key] = tuple(fit)
        found = []
        for stage, others in candidates:
            if stage.kubelet != "any" and stage.kubelet != mode:
                continue
            for match in others:
                if not match(pod):
                    break
            else:
                found.append(stage)
        if len(found) > 1:
            top = max(s.priority for s in found)
            found = [s for s in found if s.priority == top]
        return found

    def choose(self, pod: Mapping[str, Any], mode: KubeletMode, rng: random.Random) -> Stage | None:
        found = self.matching(pod, mode)
        if len(found) <= 1:
            return found[0] if found else None
        return rng.choices(found, weights=[s.weight for s in found])[0]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


_STAGE_KEYS = {"name", "selector", "delay", "next", "weight", "priority", "kubelet"}
NextValidator = Callable[[Mapping[str, Any]], None]


def parse_stage(
    raw: Mapping[str, Any], variables: Mapping[str, str], check: NextValidator
) -> Stage:
    unknown = set(raw) - _STAGE_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} (keys: {sorted(_STAGE_KEYS)})")
    if raw.get("kubelet", "any") not in ("any", "timed", "process"):
        raise ValueError(f"kubelet must be any, timed or process, not {raw['kubelet']!r}")
    selector = raw.get("selector") or {}
    if not isinstance(selector, dict):
        raise ValueError("selector must be a mapping of field: matcher")
    nxt = raw.get("next") or {}
    check(nxt)
    return Stage(
        name=str(raw.get("name") or ""),
        selector=tuple(parse_match(k, v, variables) for k, v in selector.items()),
        delay=parse_delay(raw.get("delay", 0)),
        next=nxt,
        weight=float(raw.get("weight", 1)),
        priority=int(raw.get("priority", 0)),
        kubelet=raw.get("kubelet", "any"),
    )


def _read(name: str) -> tuple[str, str]:
    """(label, YAML text) of a built-in profile name or a file path."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise StageError(f"profile file {name} does not exist")
        return str(path), path.read_text()
    builtin = resources.files("kubequeue.sim").joinpath(PROFILE_DIR, f"{name}.yaml")
    if not builtin.is_file():
        raise StageError(f"unknown profile {name!r} (built-in: {', '.join(builtin_profiles())})")
    return name, builtin.read_text()


def builtin_profiles() -> list[str]:
    folder = resources.files("kubequeue.sim").joinpath(PROFILE_DIR)
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


@cache
def load_profile(name: str) -> Profile:
    """A built-in profile (`fast`, `general`, `chaos`) or a YAML file; `include`d profiles'
    stages come after the file's own. Raises StageError naming the file and stage."""
    from kubequeue.sim.podstatus import validate_next  # the `next` vocabulary lives there

    label, text = _read(name)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise StageError(f"profile {label}: not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("stages", []), list):
        raise StageError(f"profile {label}: expected a mapping with a `stages` list")
    variables = {str(k): str(v) for k, v in (doc.get("vars") or {}).items()}
    stages: list[Stage] = []
    for i, raw in enumerate(doc.get("stages") or ()):
        where = f"profile {label}, stage {raw.get('name') or i + 1 if isinstance(raw, dict) else i}"
        try:
            if not isinstance(raw, dict):
                raise ValueError("a stage is a mapping")
            stages.append(parse_stage(raw, variables, validate_next))
        except (ValueError, TypeError, re.error) as e:
            raise StageError(f"{where}: {e}") from e
    for included in doc.get("include") or ():
        stages.extend(load_profile(str(included)).stages)
    return Profile(label, tuple(stages))


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in _TERMINAL
