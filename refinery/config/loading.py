"""Reading, merging, validating and writing configs; every problem is one `ConfigError` line
that names the key."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .schema import ConfigError, PipelineConfig


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent = _submodel(model, err["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{key}: unknown key (allowed here: {allowed})"
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if isinstance(got, dict) or (isinstance(got, list) and len(repr(got)) > 60):
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {got!r})"


def _submodel(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def validate(raw: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a raw mapping; on failure raise ConfigError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise ConfigError(f"{source}: {_describe(first, PipelineConfig)}{suffix}") from None


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that a config may not use: an alias, or a key given twice."""


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases and without duplicate keys. A config never needs an alias,
    and nested aliases expand to billions of nodes when the config is checked or printed (the
    "billion laughs"); a duplicate key silently keeps the last value."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            alias = self.peek_event()
            raise RefusedYAML(problem=f"alias *{alias.anchor} refused: a config may not use YAML anchors and "
                                      "aliases; write the values out", problem_mark=alias.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        first_line: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # an unhashable key: SafeLoader refuses it
            key = self.construct_object(key_node)
            if key in first_line:
                raise RefusedYAML(problem=f"duplicate key {key!r} (first at line {first_line[key]})",
                                  problem_mark=key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text as Python values, through ConfigLoader (RefusedYAML for an alias or a duplicate key)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506  ConfigLoader is a SafeLoader


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = parse_yaml(path.read_text()) or {}
    except RefusedYAML as exc:
        raise ConfigError(f"{path}: line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def load(path: Path) -> PipelineConfig:
    return validate(read_yaml(path), str(path))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value`; the value is read as YAML so numbers, lists and nulls work."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key segment")
    try:
        parsed = parse_yaml(value) if value.strip() else ""
    except RefusedYAML as exc:
        raise ConfigError(f"--set {key.strip()}: {exc.problem}") from None
    except yaml.YAMLError:
        parsed = value  # not YAML: the text itself
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_hash(section: BaseModel | dict) -> str:
    """A short, stable hash of a config section (sorted JSON)."""
    data = to_dict(section) if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
