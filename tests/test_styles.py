import os
from pathlib import Path

import pytest

from composer.arrangement.styles import StyleLibrary
from composer.errors import ArrangementError, StyleError
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


def test_every_style_leaves_the_tempo_to_the_arrangement() -> None:
    """A pulsed style says where the tempo goes ({bpm}) and names none of its own; a free one names none."""
    lib = StyleLibrary.load(STYLES)
    for name in lib.names():
        style = lib.get(name)
        assert "BPM" not in style.text.upper().replace("{BPM}", ""), name
        assert ("{bpm}" in style.text) != style.free_tempo, name


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


def test_a_very_deep_chain_is_one_clear_error(tmp_path: Path) -> None:
    """#19 item 13: 1500 styles each extending the next exhausted the stack (RecursionError)."""
    write(tmp_path, "s0", "prompt: Root.\n")
    for i in range(1, 1500):
        write(tmp_path, f"s{i}", f"extends: s{i - 1}\n")
    with pytest.raises(StyleError, match="more than 32 styles deep") as caught:
        StyleLibrary.load(tmp_path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    for i in range(32, 1500):  # a chain of 32 styles is fine
        (tmp_path / f"s{i}.yaml").unlink()
    assert StyleLibrary.load(tmp_path).get("s31").chain[0] == "s0"


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


def style(name: str, extends: str | None = None, prompt: str = "A prompt of several words.") -> str:
    parent = f"extends: {extends}\n" if extends else ""
    return f"name: {name}\ndescription: d\n{parent}prompt: {prompt}\n"


@pytest.mark.parametrize("parent", ["../outside/evil", "/etc/passwd", "a/b"])
def test_extends_must_name_a_style_in_the_folder(tmp_path: Path, parent: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "evil.yaml").write_text(style("evil"))  # exists: the old check let it through
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "child.yaml").write_text(style("child", f'"{parent}"'))
    with pytest.raises(ArrangementError) as info:
        StyleLibrary.load(styles)
    assert "child.yaml:3: extends:" in str(info.value) and "KeyError" not in str(info.value)


def test_a_yml_parent_is_found_and_a_duplicate_name_refused(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text(style("base"))
    (tmp_path / "child.yaml").write_text(style("child", "base", "More."))
    assert StyleLibrary.load(tmp_path).get("child").chain == ("base", "child")
    (tmp_path / "base.yaml").write_text(style("base", prompt="Another base."))
    with pytest.raises(ArrangementError, match="style 'base' is also defined by base.yaml"):
        StyleLibrary.load(tmp_path)


def test_links_fifos_and_folders_are_refused_without_reading_them(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$very-secret-hash:19000:0:99999:7:::\n")
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "shadow.yaml").symlink_to(secret)
    os.mkfifo(styles / "pipe.yaml")
    (styles / "folder.yaml").mkdir()
    with pytest.raises(ArrangementError) as info:
        StyleLibrary.load(styles)
    message = str(info.value)
    assert "very-secret-hash" not in message and "shadow.yaml: a symbolic link" in message
    assert "pipe.yaml: not a regular file" in message and "folder.yaml: not a regular file" in message
    assert "arrangement" not in message


def test_a_child_replaces_a_part_and_keeps_the_rest(tmp_path: Path) -> None:
    write(
        tmp_path, "drone", "tempo: free\ngenre: beatless drone\nfeel: no pulse at all\nmood: vast\nexclude: [drums]\n"
    )
    write(tmp_path, "pads", "extends: drone\ntempo: pulse\nfeel: a slow pulse at {bpm}\nprompt: plus pads\n")
    lib = StyleLibrary.load(tmp_path)
    assert lib.get("pads").render(70, "D major") == (
        "Beatless drone. A slow pulse at 70 BPM. Vast. Plus pads. No drums. In D major."
    )
    assert lib.get("drone").render(70, None) == "Beatless drone. No pulse at all. Vast. No drums."
    assert lib.get("drone").free_tempo and not lib.get("pads").free_tempo


def test_style_text_is_capped_after_inheritance(tmp_path: Path) -> None:
    """#19 item 15: a 900 kB `modifiers` made T5 try to allocate 1.04 TB; 20 kB took 7.3 GB. Every item,
    every list and the resolved prompt (a chain adds its parents' text) have a length limit."""
    from composer.prompt import PROMPT_MAX_CHARS

    write(tmp_path, "huge", "prompt: Root.\nmodifiers: [" + "x" * 900_000 + "]\n")
    with pytest.raises(ArrangementError, match=r"huge.yaml:4: modifiers\[0\]: String should have at most 300 char"):
        StyleLibrary.load(tmp_path)
    (tmp_path / "huge.yaml").unlink()
    write(tmp_path, "many", "prompt: Root.\nexclude: [" + ", ".join(f"e{i}" for i in range(80)) + "]\n")
    with pytest.raises(ArrangementError, match=r"many.yaml:4: exclude: List should have at most 50 items"):
        StyleLibrary.load(tmp_path)
    (tmp_path / "many.yaml").unlink()
    write(tmp_path, "s0", "prompt: " + "w " * 950 + "\n")  # 1900 characters each: fine alone
    for i in range(1, 4):
        write(tmp_path, f"s{i}", f"extends: s{i - 1}\nprompt: " + "w " * 950 + "\n")
    with pytest.raises(StyleError, match=rf"s3.yaml: prompt: the style's prompt is 7\d\d\d characters with what it "
                                         rf"extends \(limit {PROMPT_MAX_CHARS}\)") as caught:  # fmt: skip
        StyleLibrary.load(tmp_path)
    assert "\n" not in str(caught.value)
    (tmp_path / "s3.yaml").unlink()
    assert 5000 < len(StyleLibrary.load(tmp_path).get("s2").text) <= PROMPT_MAX_CHARS
