import pytest

from siblings.registry import Registry, UnknownNameError


def test_unknown_name_lists_allowed():
    reg: Registry[int] = Registry("widget")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; allowed: a, b"):
        reg.get("c")


def test_duplicate_registration_fails():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)
