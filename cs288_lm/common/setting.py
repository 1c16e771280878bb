"""A configuration field with its help text: the one description of a setting (given).

Here, below every other layer, so that the configurations of any layer (``models.ModelConfig``,
``training.TrainConfig``) declare their fields with it; :mod:`cs288_lm.training.settings` turns such
dataclasses into JSON settings and command-line flags.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def setting(default: Any, help: str, *, not_settings: tuple[str, ...] = ()) -> Any:
    """A dataclass field whose default is ``default`` (immutable), described by ``help`` (what the setting
    does, without its default, which ``--help`` adds). A dict or list field is
    ``field(default_factory=..., metadata={"help": ...})``.

    A field holding a nested configuration (a dataclass) has its fields as settings too; ``not_settings``
    names those of them that are not (filled in by the code, like a model's ``vocab_size``)."""
    if not help.strip():
        raise TypeError("a setting needs a help text")
    return dataclasses.field(default=default, metadata={"help": help, "not_settings": not_settings})
