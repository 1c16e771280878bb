"""Settings of the given programs: dataclass configurations from JSON files and flags, the
repository's location and the device (given).

One place for what the pretraining (:mod:`cs288_lm.training.trainer`, and the programs that run it) and
the Part 4 main job (:mod:`cs288_lm.training.qa_job`) do with their settings:

* :func:`read_settings_file`: a JSON file holding one object, with an error that names the file
  (missing, unreadable, invalid JSON with its line and column, not an object);
* :func:`config_from_settings`: a dataclass from a mapping of settings, listing unknown names (with
  the closest known one) and values of the wrong JSON type;
* :func:`setting` (from :mod:`cs288_lm.common.setting`): a dataclass field with its help text, the
  one description of a setting that the flags' ``--help`` shows (with the field's default);
* nested configurations: a field whose type is a dataclass (``TrainConfig.model``, a ``ModelConfig``)
  is an object of settings in JSON (``{"model": {"d_model": 256}}``, applied over the field's
  default) and its fields are flags of their own names (``--d-model``); a nested setting given at
  the top of a JSON object is an error that says where to move it (:func:`config_settings` lists
  them all);
* :func:`add_config_flags` and :func:`flags_given`: one command-line flag per setting
  (``--learning-rate`` for ``learning_rate``), typed from the field's annotation
  (``typing.get_type_hints``); an optional field takes ``none``. :func:`add_config_flag` adds one
  field's flag under another name;
* :class:`HelpFormatter`: the given programs' ``--help`` layout, with every option's default.

Errors are :class:`SettingsError` (a ``ValueError``); the command lines turn them into argparse
errors (exit code 2, no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cs288_lm.common.setting import setting as setting  # re-exported: declared below every layer

if TYPE_CHECKING:  # torch is imported where a device is resolved, so that light programs' --help starts fast
    import torch

T = TypeVar("T")

# The default paths of the given programs (bundled data, tokenizer, configs) are under this folder.
REPO_ROOT = Path(__file__).resolve().parents[2]


# The help of every --device flag: the names resolve_device takes.
DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps"


def resolve_device(name: str) -> torch.device:
    """``name`` as a device; "auto" is CUDA, else Apple's MPS, else the CPU."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class SettingsError(ValueError):
    """A settings file or a setting is wrong; the message says which and why."""


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path}: cannot be read ({error})") from None
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(settings, dict):
        raise SettingsError(f"{path}: expected a JSON object of settings, got {_json_kind(settings)}")
    return settings


def field_types(config_class: type) -> dict[str, Any]:
    """Each field's type, resolved from its annotation (``int | None``, ``Literal[...]``, ...)."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of a configuration class: a field, or a field of a nested configuration field
    (``path`` ``("model", "d_model")``). Its flag is named after the field alone (``--d-model``)."""

    path: tuple[str, ...]
    owner: type  # the dataclass that declares the field
    kind: Any
    default: Any  # the outer configuration's default (for a nested field, its default configuration's)

    @property
    def name(self) -> str:
        return self.path[-1]


def config_settings(config_class: type) -> dict[str, Setting]:
    """Every setting of ``config_class`` by name, nested configurations' fields included (not those
    the nesting field lists in ``not_settings``). Two settings of one name are a TypeError: their
    flags would clash."""
    found: dict[str, Setting] = {}

    def collect(owner: type, defaults: Any, prefix: tuple[str, ...], skip: tuple[str, ...]) -> None:
        kinds = field_types(owner)
        for field in dataclasses.fields(owner):
            if field.name in skip:
                continue
            default = getattr(defaults, field.name) if defaults is not None else _field_default(field)
            if _is_config(kinds[field.name]):
                collect(kinds[field.name], default, (*prefix, field.name), field.metadata.get("not_settings", ()))
                continue
            if field.name in found:
                raise TypeError(f"{config_class.__name__}: two settings named {field.name!r}")
            found[field.name] = Setting((*prefix, field.name), owner, kinds[field.name], default)

    collect(config_class, None, (), ())
    return found


def config_from_settings(config_class: type[T], settings: Mapping[str, Any], source: str) -> T:
    """``config_class(**settings)`` after checking the names and the JSON types of ``settings``.

    ``source`` names where the settings come from in error messages (a file, ``'pretrain'``).
    An integer is accepted for a float field (and converted). A nested configuration field takes an
    object of its own settings, applied over the field's default. The dataclasses' own checks
    (``__post_init__``) raise their ValueErrors unchanged.
    """
    return _config_from_settings(config_class, settings, source, None, ())


def _config_from_settings(
    config_class: type[T], settings: Mapping[str, Any], source: str, defaults: Any, skip: tuple[str, ...]
) -> T:
    """:func:`config_from_settings`, over ``defaults`` (a nested field's default) when given, without
    the fields in ``skip``."""
    types_by_name = {name: kind for name, kind in field_types(config_class).items() if name not in skip}
    _check_names(settings, source, types_by_name, skip)
    fields = {field.name: field for field in dataclasses.fields(typing.cast(Any, config_class))}
    values = {}
    for name, value in settings.items():
        kind = types_by_name[name]
        if _is_config(kind) and not isinstance(value, kind):
            if not isinstance(value, dict):
                raise SettingsError(f"{source}: {name!r} must be an object of settings, got {_json_kind(value)}")
            default = getattr(defaults, name) if defaults is not None else _field_default(fields[name])
            nested_skip = fields[name].metadata.get("not_settings", ())
            values[name] = _config_from_settings(kind, value, f"{source} {name!r}", default, nested_skip)
        elif not _is_config(kind) and not _matches(value, kind):
            raise SettingsError(f"{source}: {name!r} must be {_describe(kind)}, got {_json_kind(value)} {value!r}")
        else:
            values[name] = float(value) if _base(kind) is float and isinstance(value, int) else value
    if defaults is not None:
        return dataclasses.replace(defaults, **values)
    return config_class(**values)


def _check_names(
    settings: Mapping[str, Any], source: str, types_by_name: dict[str, Any], skip: tuple[str, ...]
) -> None:
    """Unknown names raise a SettingsError: a nested configuration's setting given at the top says
    where it goes, a misspelt one gets the closest known name."""
    unknown = sorted(set(settings) - set(types_by_name))
    if not unknown:
        return
    for name in unknown:
        if name in skip:
            raise SettingsError(f"{source}: {name!r} is not a setting (the program fills it in); remove it")
    nested = {
        inner: outer for outer, kind in types_by_name.items() if _is_config(kind) for inner in config_settings(kind)
    }
    for name in unknown:
        if name in nested:
            outer = nested[name]
            where = f'{{"{outer}": {{"{name}": ...}}}}'
            raise SettingsError(f'{source}: {name!r} is a setting of {outer!r}; move it under "{outer}": {where}')
    hints = [
        f"{close[0]!r} for {name!r}" for name in unknown if (close := difflib.get_close_matches(name, types_by_name, 1))
    ]
    suggestion = f" (did you mean {', '.join(hints)}?)" if hints else ""
    raise SettingsError(f"{source}: unknown settings {unknown}{suggestion}; known: {', '.join(types_by_name)}")


def merge_settings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, nested objects merged rather than replaced (flags over a file)."""
    merged = dict(base)
    for name, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            value = merge_settings(merged[name], value)
        merged[name] = value
    return merged


def settings_of(config: Any) -> dict[str, Any]:
    """``config`` as the JSON settings :func:`config_from_settings` reads back: nested configurations
    as objects, without their fields that are not settings."""
    result = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            skip = field.metadata.get("not_settings", ())
            value = {name: item for name, item in settings_of(value).items() if name not in skip}
        result[field.name] = value
    return result


def field_help(config_class: type, name: str) -> str:
    """The help text of ``config_class``'s setting or field ``name`` followed by its default."""
    entry = config_settings(config_class).get(name)
    if entry is not None:
        field, default = {field.name: field for field in dataclasses.fields(entry.owner)}[name], entry.default
    else:  # a nested configuration field itself
        field = {field.name: field for field in dataclasses.fields(config_class)}[name]
        default = _field_default(field)
    help_text = field.metadata.get("help")
    if not help_text:
        raise TypeError(f"{config_class.__name__}.{name} has no help text: declare it with setting(default, help)")
    return f"{help_text} (default: {format_default(default)})"


def format_default(value: Any) -> str:
    """A default as a user types it on the command line or in a JSON config (``none``, ``true``, ``{}``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if dataclasses.is_dataclass(value):
        return json.dumps(settings_of(value))
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, exclude: tuple[str, ...] = ()) -> None:
    """One flag per setting of ``config_class`` (nested configurations' included, not those in
    ``exclude``), absent from the namespace unless given."""
    for name in config_settings(config_class):
        if name not in exclude:
            add_config_flag(parser, config_class, name)


def add_config_flag(
    parser: argparse.ArgumentParser, config_class: type, name: str, flag: str | None = None, dest: str | None = None
) -> None:
    """The flag of ``config_class``'s setting ``name`` (``--learning-rate`` for ``learning_rate``, or ``flag``),
    stored as ``dest`` (default: ``name``), with the field's help and default; absent from the namespace
    unless given."""
    kind = config_settings(config_class)[name].kind
    flag = flag or "--" + name.replace("_", "-")
    options: dict[str, Any] = {
        "default": argparse.SUPPRESS,
        "help": field_help(config_class, name).replace("%", "%%"),  # argparse formats help with %
        "dest": dest or name,
    }
    if _base(kind) is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
    else:
        parse = _flag_parser(kind)
        parser.add_argument(flag, type=parse, metavar=parse.__name__.upper(), **options)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written, and each option's default after its help (``(required)`` for a
    required one) unless the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default:" in help_text or action.default is argparse.SUPPRESS or not action.option_strings:
            return help_text
        if action.required:
            return f"{help_text} (required)"
        return f"{help_text} (default: {format_default(action.default).replace('%', '%%')})"


def flags_given(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The settings of ``config_class`` given as flags (``None`` for ``none``), a nested configuration's
    under its field (``{"model": {"d_model": 64}}``)."""
    given: dict[str, Any] = {}
    for name, entry in config_settings(config_class).items():
        if hasattr(args, name):
            target = given
            for part in entry.path[:-1]:
                target = target.setdefault(part, {})
            target[name] = getattr(args, name)
    return given


# ---- types ---------------------------------------------------------------------------------------


def _is_config(kind: Any) -> bool:
    """Whether a field of this type is a nested configuration (a dataclass)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _field_default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _optional(kind: Any) -> bool:
    return _is_union(kind) and type(None) in typing.get_args(kind)


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def _base(kind: Any) -> Any:
    """``int`` for ``int | None``; ``dict`` for ``dict[str, Any]``; ``str`` for ``Literal["a", "b"]``."""
    if _is_union(kind):
        others = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _base(others[0]) if len(others) == 1 else Any
    if typing.get_origin(kind) is typing.Literal:
        return type(typing.get_args(kind)[0])
    return typing.get_origin(kind) or kind


def _matches(value: Any, kind: Any) -> bool:
    if value is None:
        return _optional(kind) or kind is Any
    if typing.get_origin(kind) is typing.Literal:
        return value in typing.get_args(kind)
    base = _base(kind)
    if base is Any:
        return True
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        text = "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    else:
        text = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "a string",
            dict: "an object",
            list: "a list",
        }.get(_base(kind), str(kind))
    return text + " or null" if _optional(kind) else text


def _json_kind(value: Any) -> str:
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


def _flag_parser(kind: Any) -> Callable[[str], Any]:
    """argparse's ``type=`` for a field: the base type, or None for ``none`` if the field is optional."""
    base = _base(kind)
    if base not in (int, float, str):
        raise TypeError(f"no command-line flag for a field of type {kind}")
    if not _optional(kind):
        return base

    def parse(text: str) -> Any:
        return None if text == "none" else base(text)

    parse.__name__ = base.__name__  # argparse's "invalid int value" and the metavar use it
    return parse
