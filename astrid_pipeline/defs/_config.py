"""Dagster ``Config`` and ``ConfigurableResource`` classes derived from the science-side settings.

Every setting is declared once, as a field of a Dagster-free ``@dataclass`` next to the code that
uses it (``field(default=..., metadata={"description": ...})``). :func:`config_class` turns such a
dataclass into a Dagster ``Config`` with the same fields, defaults and descriptions (nested
dataclasses become nested config sections, tuples become lists), so the launchpad shows exactly the
science code's settings and nothing is copied field by field. ``to_settings()`` on an instance gives
the dataclass back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from dagster import Config, ConfigurableResource
from pydantic import Field

_CACHE: dict[tuple[type, type, str], type] = {}


def _is_dataclass_type(t) -> bool:
    return isinstance(t, type) and dataclasses.is_dataclass(t)


def _strip_optional(t):
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return t, False


def _config_type(t, base: type):
    """The pydantic annotation of a dataclass field type (tuples -> lists, dataclasses -> Config)."""
    inner, optional = _strip_optional(t)
    origin = typing.get_origin(inner)
    if _is_dataclass_type(inner):
        out = config_class(inner, base=Config)
    elif origin in (tuple, list, typing.Sequence):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        item = _config_type(args[0], base) if args else str
        out = list[item]
    elif origin is dict:
        out = dict[str, Any]
    else:
        out = inner
    return typing.Optional[out] if optional else out


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return ...
    return _to_config_value(value)


def _to_config_value(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _to_config_value(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return [_to_config_value(v) for v in value]
    return value


def _from_config_value(t, value):
    inner, _ = _strip_optional(t)
    if value is None:
        return None
    if _is_dataclass_type(inner):
        return _build(inner, value)
    if typing.get_origin(inner) is tuple:
        args = [a for a in typing.get_args(inner) if a is not Ellipsis]
        return tuple(_from_config_value(args[0], v) if args else v for v in value)
    return value


def _build(dc: type, values):
    if isinstance(values, (Config, ConfigurableResource)):
        values = values.model_dump() if hasattr(values, "model_dump") else dict(values)
    hints = typing.get_type_hints(dc)
    kwargs = {}
    for f in dataclasses.fields(dc):
        if not f.init or f.name not in values:
            continue
        kwargs[f.name] = _from_config_value(hints[f.name], values[f.name])
    return dc(**kwargs)


def config_class(dc: type, *, base: type = Config, name: str | None = None, doc: str | None = None,
                 defaults: Any = None) -> type:
    """A Dagster ``Config`` (or ``ConfigurableResource`` with ``base=``) with the fields of dataclass ``dc``.

    Instances have ``to_settings()``, which returns the equivalent ``dc`` instance. ``defaults``, an
    instance of ``dc``, supplies the launchpad's default values where an asset's quick default differs
    from the science code's (the fields and descriptions stay the dataclass's).
    """
    if not _is_dataclass_type(dc):
        raise TypeError(f"{dc!r} is not a dataclass")
    if defaults is not None and not isinstance(defaults, dc):
        raise TypeError(f"defaults must be a {dc.__name__} instance, got {type(defaults).__name__}")
    key = (dc, base, name or "")
    if key in _CACHE:
        return _CACHE[key]
    hints = typing.get_type_hints(dc)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations, "__module__": __name__,
                                 "__doc__": doc or (dc.__doc__ or "").strip().split("\n\n")[0]}
    for f in dataclasses.fields(dc):
        if not f.init or f.name.startswith("_"):
            continue
        annotations[f.name] = _config_type(hints[f.name], base)
        default = _field_default(f) if defaults is None else _to_config_value(getattr(defaults, f.name))
        description = f.metadata.get("description", "") if f.metadata else ""
        inner, _ = _strip_optional(hints[f.name])
        if isinstance(default, dict) and _is_dataclass_type(inner):  # nested section: a fresh default instance
            nested = config_class(inner, base=Config)
            namespace[f.name] = Field(default_factory=lambda d=default, c=nested: c(**d), description=description)
        elif isinstance(default, dict):  # pydantic needs a factory for mutable defaults
            namespace[f.name] = Field(default_factory=lambda d=default: dict(d), description=description)
        elif isinstance(default, list):
            namespace[f.name] = Field(default_factory=lambda d=default: list(d), description=description)
        else:
            namespace[f.name] = Field(default=default, description=description)

    def to_settings(self):
        return _build(dc, self.model_dump())

    namespace["to_settings"] = to_settings
    cls = types.new_class(name or f"{dc.__name__}Config", (base,), {}, lambda ns: ns.update(namespace))
    _CACHE[key] = cls
    return cls


def settings_of(config) -> Any:
    """The science-side settings behind a derived Config or resource (``to_settings()``)."""
    return config.to_settings()
