"""Tests of the name -> object registry."""

import pytest

from omg_cnnrnn.registry import Registry


def test_register_lookup_and_order():
  reg = Registry("thing")
  reg.register("b", 2)

  @reg.decorator("a")
  def fn():
    return 1

  assert reg.lookup("a") is fn and reg.lookup("b") == 2
  assert reg.names() == ["b", "a"] and len(reg) == 2 and "a" in reg


def test_duplicate_and_unknown_names_fail_loudly():
  reg = Registry("thing")
  reg.register("x", 1)
  with pytest.raises(ValueError, match="'x' is already registered"):
    reg.register("x", 2)
  with pytest.raises(KeyError, match="unknown thing 'y'.*x"):
    reg.lookup("y")
