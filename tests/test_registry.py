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


def test_a_family_answers_every_name_under_its_prefix():
    reg: Registry[str] = Registry("widget")
    reg.register("plain")("p")

    @reg.register_family("any/")
    def build(name: str) -> str:
        if name == "bad":
            raise UnknownNameError("no such widget 'bad'")
        return name.upper()

    assert reg.get("any/thing") == "THING" and "any/thing" in reg and "any/bad" not in reg
    assert reg.names() == ["plain"]  # members are answered, not listed
    with pytest.raises(UnknownNameError, match=r"allowed: plain, or any/<name>"):
        reg.get("other")
