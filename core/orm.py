"""The base class of Agora's models.

Tortoise reads the source file of every model class as it is defined, looking for `#:` field
comments to use as descriptions (`tortoise.models._get_comments`: `inspect.getsource` and a
regular expression over the module, once per class). Agora documents fields in docstrings and
has no such comments, and reading the sources cost about 0.2 s at every start of a process (a
web worker, a job worker, every `agora` command). Models built on this base skip it; Tortoise
does the same for the models its migrations build.
"""

from __future__ import annotations

from typing import Any

from tortoise.models import Model as TortoiseModel
from tortoise.models import ModelMeta


class _Meta(ModelMeta):
    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> Any:
        attrs.setdefault("_no_comments", True)
        return super().__new__(mcs, name, bases, attrs)


class Model(TortoiseModel, metaclass=_Meta):
    class Meta:
        abstract = True
