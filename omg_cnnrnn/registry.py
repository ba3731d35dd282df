"""Two small registries (STYLE habit 1): name -> experiment config, name -> builder.

`Registry` maps names to objects; registering a name twice is an error, and
looking up an unknown name raises an error that lists the valid ones.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """An ordered name -> object mapping with loud failures."""

  def __init__(self, kind: str):
    self._kind = kind
    self._items: dict[str, T] = {}

  def register(self, name: str, item: T) -> T:
    if name in self._items:
      raise ValueError(f"{self._kind} {name!r} is already registered")
    self._items[name] = item
    return item

  def decorator(self, name: str) -> Callable[[T], T]:
    """`@REGISTRY.decorator("name")` registers the decorated function."""

    def wrap(item: T) -> T:
      return self.register(name, item)

    return wrap

  def lookup(self, name: str) -> T:
    try:
      return self._items[name]
    except KeyError:
      valid = "\n  ".join(self._items)
      raise KeyError(f"unknown {self._kind} {name!r}; registered {self._kind}s:\n  {valid}") from None

  def names(self) -> list[str]:
    return list(self._items)

  def __contains__(self, name: str) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)
