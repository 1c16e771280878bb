"""Settings of the given programs: dataclass configurations from JSON files and flags, the
repository's location and the device (given).

One place for what the pretraining (:mod:`cs288_lm.pipelines.pretrain`, and the sweep that runs it) and the
Part 4 main job (``run_finetune_qa.py``, :mod:`cs288_lm.pipelines.qa_job`) do with their settings:

* :func:`read_settings_file`: a JSON file holding one object, with an error that names the file
  (missing, unreadable, invalid JSON with its line and column, not an object);
* :func:`config_from_settings`: a dataclass from a mapping of settings, listing unknown names (with
  the closest known one) and values of the wrong JSON type;
* :func:`setting`: a dataclass field with its help text, the one description of a setting that the
  flags' ``--help`` shows (with the field's default);
* :func:`add_config_flags` and :func:`flags_given`: one command-line flag per dataclass field
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


def config_from_settings(config_class: type[T], settings: Mapping[str, Any], source: str) -> T:
    """``config_class(**settings)`` after checking the names and the JSON types of ``settings``.

    ``source`` names where the settings come from in error messages (a file, ``'pretrain'``).
    An integer is accepted for a float field (and converted). The dataclass's own checks
    (``__post_init__``) raise their ValueErrors unchanged.
    """
    types_by_name = field_types(config_class)
    unknown = sorted(set(settings) - set(types_by_name))
    if unknown:
        hints = [
            f"{close[0]!r} for {name!r}"
            for name in unknown
            if (close := difflib.get_close_matches(name, types_by_name, 1))
        ]
        suggestion = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise SettingsError(f"{source}: unknown settings {unknown}{suggestion}; known: {', '.join(types_by_name)}")
    values = {}
    for name, value in settings.items():
        kind = types_by_name[name]
        if not _matches(value, kind):
            raise SettingsError(f"{source}: {name!r} must be {_describe(kind)}, got {_json_kind(value)} {value!r}")
        values[name] = float(value) if _base(kind) is float and isinstance(value, int) else value
    return config_class(**values)


def setting(default: Any, help: str) -> Any:
    """A dataclass field whose default is ``default`` (immutable), described by ``help`` (what the setting
    does, without its default, which ``--help`` adds). A dict or list field is
    ``field(default_factory=..., metadata={"help": ...})``."""
    if not help.strip():
        raise TypeError("a setting needs a help text")
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(config_class: type, name: str) -> str:
    """The help text of ``config_class``'s field ``name`` followed by its default."""
    field = {field.name: field for field in dataclasses.fields(config_class)}[name]
    help_text = field.metadata.get("help")
    if not help_text:
        raise TypeError(f"{config_class.__name__}.{name} has no help text: declare it with setting(default, help)")
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return f"{help_text} (default: {format_default(default)})"


def format_default(value: Any) -> str:
    """A default as a user types it on the command line or in a JSON config (``none``, ``true``, ``{}``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of ``config_class`` (not in ``exclude``), absent from the namespace unless given."""
    for name in field_types(config_class):
        if name not in exclude:
            add_config_flag(parser, config_class, name)


def add_config_flag(
    parser: argparse.ArgumentParser, config_class: type, name: str, flag: str | None = None, dest: str | None = None
) -> None:
    """The flag of ``config_class``'s field ``name`` (``--learning-rate`` for ``learning_rate``, or ``flag``),
    stored as ``dest`` (default: ``name``), with the field's help and default; absent from the namespace
    unless given."""
    kind = field_types(config_class)[name]
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
    """The fields of ``config_class`` that were given as flags (``None`` for ``none``)."""
    return {
        field.name: getattr(args, field.name) for field in dataclasses.fields(config_class) if hasattr(args, field.name)
    }


# ---- types ---------------------------------------------------------------------------------------


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
