from pathlib import Path

import pytest

from composer.errors import ArrangementError, StyleError
from composer.styles import StyleLibrary
from tests.conftest import STYLES


def test_library_has_required_breadth() -> None:
    lib = StyleLibrary.load(STYLES)
    names = lib.names()
    assert len(names) >= 12
    families = {lib.get(n).family for n in names}
    assert {"industrial", "house", "techno", "jazz", "ambient", "experimental"} <= families
    for name in names:
        text = lib.get(name).text
        assert len(text.split()) >= 40, f"{name} is too short to steer MusicGen"
        assert "No " in text, f"{name} says nothing about what to leave out"


def test_every_root_style_gives_tempo() -> None:
    lib = StyleLibrary.load(STYLES)
    for name in lib.names():
        style = lib.get(name)
        if lib.get(style.chain[0]).family not in ("ambient", "experimental", "utility"):
            assert "BPM" in style.text, name


def write(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.yaml").write_text(f"name: {name}\ndescription: d\n{body}")


def test_inheritance_order_modifiers_and_exclude(tmp_path: Path) -> None:
    write(tmp_path, "base", "prompt: Base text.\nmodifiers: [warm]\nexclude: [vocals]\n")
    write(tmp_path, "child", "extends: base\nprompt: Child text.\nmodifiers: [dark]\nexclude: [vocals, guitars]\n")
    write(tmp_path, "grandchild", "extends: child\nmodifiers: [slow]\n")
    lib = StyleLibrary.load(tmp_path)
    g = lib.get("grandchild")
    assert g.chain == ("base", "child", "grandchild")
    assert g.text == "Base text. Child text. Warm, dark, slow. No vocals, no guitars."


def test_unknown_style_suggests(tmp_path: Path) -> None:
    lib = StyleLibrary.load(STYLES)
    with pytest.raises(StyleError, match="did you mean industrial-ebm"):
        lib.get("industrial-ebn")


def test_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a", "extends: b\n")
    write(tmp_path, "b", "extends: a\n")
    with pytest.raises(StyleError, match="loops"):
        StyleLibrary.load(tmp_path)


def test_bad_style_files_are_located(tmp_path: Path) -> None:
    write(tmp_path, "a", "extends: missing\n")
    (tmp_path / "b.yaml").write_text("name: not-b\ndescription: d\nprompt: p\n")
    (tmp_path / "c.yaml").write_text("name: c\ndescription: d\nprompt: p\ncolour: red\n")
    with pytest.raises(ArrangementError) as info:
        StyleLibrary.load(tmp_path)
    msgs = [str(p) for p in info.value.problems]
    assert f"{tmp_path / 'a.yaml'}:3: extends: unknown style 'missing'" in msgs
    assert f"{tmp_path / 'b.yaml'}:1: name: must equal the file name 'b'" in msgs
    assert any(m.startswith(f"{tmp_path / 'c.yaml'}:4: colour: unknown field") for m in msgs)


def test_root_without_prompt_refused(tmp_path: Path) -> None:
    write(tmp_path, "a", "modifiers: [x]\n")
    with pytest.raises(StyleError, match="needs a prompt"):
        StyleLibrary.load(tmp_path)
