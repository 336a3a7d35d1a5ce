"""audiocraft's own model files: found where audiocraft puts them, converted once, and numerically what
audiocraft computes with them (tests/data/audiocraft, made by audiocraft 1.3 itself: make_data.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.engine import audiocraft
from composer.engine.chroma import chroma
from composer.engine.fastloop import FastDecoder
from composer.engine.models import ensure_available, list_cached, load_model
from composer.engine.sampling import Row
from composer.engine.types import Sampling
from composer.errors import ModelLoadingError
from composer.settings import Settings, load_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "audiocraft"
REV = "6f1e4ad62a4a5a3c1e8e0f1c1d0a6a0b4c9e2f10"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(DATA / "reference.pt", weights_only=True)


def hub_layout(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay ``files`` out as huggingface_hub does (blobs named by hash, snapshot symlinks, refs/main)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        shutil.copyfile(source, repo / "blobs" / digest)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    return snapshot


def tiny_encodec(folder: Path) -> None:
    """A transformers EnCodec checkpoint (what ``facebook/encodec_32khz`` is) at the mono codec's shape."""
    from transformers import EncodecConfig, EncodecModel

    package = audiocraft.read_package(DATA / "mono" / audiocraft.CODEC_FILE)
    config = audiocraft.codec_config(audiocraft.xp_config(package, DATA), DATA)
    torch.manual_seed(0)
    EncodecModel(EncodecConfig(**config)).save_pretrained(folder)


@pytest.fixture()
def model_cache(tmp_path: Path) -> Path:
    """A model-cache/ as the audiocraft Docker image leaves it (HF_HOME=AUDIOCRAFT_CACHE_DIR=/cache):
    audiocraft's files for musicgen-small, -stereo-small and -melody, T5 and EnCodec in the hub cache."""
    cache = tmp_path / "model-cache"
    hub_layout(cache / "hub", "t5-base", {f.name: f for f in (DATA / "t5-base").iterdir()})
    for name, folder in (("facebook/musicgen-small", "mono"), ("facebook/musicgen-stereo-small", "stereo"),
                         ("facebook/musicgen-melody", "melody")):  # fmt: skip
        hub_layout(cache, name, {f.name: f for f in (DATA / folder).iterdir() if f.name != "reference.pt"})
    codec = tmp_path / "encodec"
    tiny_encodec(codec)
    hub_layout(cache / "hub", "facebook/encodec_32khz", {f.name: f for f in codec.iterdir()})
    return cache


def settings_for(cache: Path, **env: str) -> Settings:
    base = {"HF_HOME": str(cache), "AUDIOCRAFT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
            "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    return load_settings(base | env, cwd=cache.parent)


def converted(settings: Settings, repo_id: str):  # noqa: ANN201
    from transformers import MusicgenForConditionalGeneration

    found = audiocraft.find(repo_id, settings)
    assert found is not None and found.where == "AUDIOCRAFT_CACHE_DIR"
    folder = audiocraft.converted_path(audiocraft.convert(found, settings), settings)
    return MusicgenForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()


@pytest.mark.parametrize(("repo_id", "part"), [("facebook/musicgen-small", "mono"),
                                                ("facebook/musicgen-stereo-small", "stereo")])  # fmt: skip
def test_lm_logits_match_audiocraft(model_cache: Path, reference: dict, repo_id: str, part: str) -> None:
    """The converted LM's logits for a fixed code sequence and fixed T5 states are audiocraft's, to float32
    rounding (different summation order: fused vs split projections, einsum vs matmul): measured 1.2e-6
    of logits up to 4.3; the bound is 2e-5."""
    model = converted(settings_for(model_cache), repo_id)
    ref = reference[part]
    b, k, s = ref["codes"].shape
    with torch.no_grad():
        for name in ("full", "padded"):
            mask = ref[f"mask_{name}"]
            states = model.enc_to_dec_proj(ref["states"]) * mask[..., None]
            # audiocraft cross-attends over padded positions too (as zero vectors): no mask here
            logits = model.decoder(input_ids=ref["codes"].reshape(b * k, s), encoder_hidden_states=states).logits
            err = (logits.reshape(b, k, s, -1) - ref[f"logits_{name}"]).abs().max()
            assert err < 2e-5, (name, float(err))
        masked = model.decoder(input_ids=ref["codes"].reshape(b * k, s), encoder_hidden_states=states,
                               encoder_attention_mask=mask).logits  # fmt: skip
        # with the padding masked (as transformers and composer do) only the padded row changes
        diff = (masked.reshape(b, k, s, -1) - ref["logits_padded"]).abs().amax(dim=(1, 2, 3))
        assert diff[0] < 2e-5 and diff[1] > 1e-3


@pytest.fixture(scope="module")
def melody_reference() -> dict:
    return torch.load(DATA / "melody" / "reference.pt", weights_only=True)


def test_melody_logits_match_audiocraft(model_cache: Path, melody_reference: dict) -> None:
    """A melody model prepends its reference's chroma (projected, 235 frames for audiocraft's 30 s) and then
    the text to the codes: the converted model's logits for fixed codes, chroma and T5 states are
    audiocraft's, to float32 rounding over the 252 positions (measured 1.6e-5 of logits up to 4.4; the
    bound 5e-5 is transformers' own for this check; the prefix the other way round is 0.05 off)."""
    from transformers import MusicgenMelodyForConditionalGeneration

    settings = settings_for(model_cache)
    found = audiocraft.find("facebook/musicgen-melody", settings)
    assert found is not None
    folder = audiocraft.converted_path(audiocraft.convert(found, settings), settings)
    model = MusicgenMelodyForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    ref = melody_reference
    assert model.config.chroma_length == ref["chroma_len"] == ref["long_chroma"].shape[1]
    b, k, s = ref["codes"].shape
    with torch.no_grad():
        prefix = torch.cat([model.audio_enc_to_dec_proj(ref["long_chroma"]), model.enc_to_dec_proj(ref["states"])], 1)
        logits = model.decoder(input_ids=ref["codes"].reshape(b * k, s), encoder_hidden_states=prefix).logits
    err = (logits.reshape(b, k, -1, logits.shape[-1])[:, :, -s:] - ref["logits"]).abs().max()
    assert err < 5e-5, float(err)


def test_melody_chroma_is_audiocrafts(melody_reference: dict) -> None:
    """composer's chroma of a reference equals audiocraft's ChromaExtractor's (one-hot, every frame); the
    demucs separation audiocraft runs first is not part of the model (composer does not run it)."""
    mine = chroma(melody_reference["signal"][0].numpy(), 32000)
    np.testing.assert_array_equal(mine, melody_reference["chroma"][0].numpy())


def test_melody_greedy_codes_through_composer_match_audiocraft(
    model_cache: Path, reference: dict, melody_reference: dict
) -> None:
    """load_model("melody") converts audiocraft's melody files; composer's loop, with composer's chroma of
    the reference, the text from T5 and guidance 3 (its null chroma and null text for the unconditional
    row), gives audiocraft's greedy codes (24 frames)."""
    lm = load_model("melody", settings_for(model_cache))
    assert lm.revision.startswith("audiocraft-") and lm.spec.kind == "melody"
    ref = melody_reference
    want = ref["greedy"][0].numpy()
    melody = chroma(ref["signal"][0].numpy(), 32000)
    row = Row(reference["text"], np.zeros((4, 0), np.int64), want.shape[1], 0, Sampling(cfg=3.0, greedy=True), melody)
    np.testing.assert_array_equal(FastDecoder(lm).generate([row])[0], want)


def test_codec_matches_audiocraft(model_cache: Path, reference: dict) -> None:
    """EnCodec from export_encodec: audiocraft's codes for a fixed signal exactly, its decode to 1e-5."""
    codec = converted(settings_for(model_cache), "facebook/musicgen-small").audio_encoder
    ref = reference["codec"]
    with torch.no_grad():
        codes = codec.encode(ref["signal"], bandwidth=2.2).audio_codes[0]
        assert torch.equal(codes, ref["encoded"])
        audio = codec.decode(ref["decoded_codes"][None], [None]).audio_values
    assert audio.shape == ref["decoded"].shape and (audio - ref["decoded"]).abs().max() < 1e-5


@pytest.mark.parametrize(("name", "part"), [("small", "mono"), ("stereo-small", "stereo")])
def test_greedy_codes_through_composer_match_audiocraft(model_cache: Path, reference: dict, name: str,
                                                        part: str) -> None:  # fmt: skip
    """Found by name, converted, loaded by load_model and run by composer's own decoding loop (T5 from
    the hub cache, guidance 3, greedy): audiocraft's generate gave the same 24 frames of codes."""
    lm = load_model(name, settings_for(model_cache))
    assert lm.revision.startswith("audiocraft-")
    want = reference[part]["greedy"][0].numpy()
    k = want.shape[0]
    got = FastDecoder(lm).generate([Row(reference["text"], np.zeros((k, 0), np.int64), want.shape[1], 0,
                                        Sampling(cfg=3.0, greedy=True))])[0]  # fmt: skip
    np.testing.assert_array_equal(got, want)


def test_converted_once_and_again_when_the_file_changes(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(model_cache)
    found = audiocraft.find("facebook/musicgen-small", settings)
    assert found is not None
    first = audiocraft.convert(found, settings)
    folder = audiocraft.converted_path(first, settings)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    with monkeypatch.context() as patch:  # found by the files' stat: not hashed again, not rewritten

        def no_hashing(path: Path) -> str:
            raise AssertionError(f"{path} hashed again")

        patch.setattr(audiocraft, "file_hash", no_hashing)
        assert audiocraft.convert(found, settings) == first
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    source = json.loads((folder / "composer-source.json").read_text())
    assert source["format"] == "audiocraft" and source["folder"] == str(found.folder)
    # a fine-tune saved again with other weights: another conversion
    lm = found.folder / audiocraft.LM_FILE
    package = audiocraft.read_package(lm)
    package["best_state"]["out_norm.bias"] = package["best_state"]["out_norm.bias"] + 1
    lm.unlink()
    torch.save(package, lm)
    second = audiocraft.convert(found, settings)
    assert second != first and audiocraft.converted_path(second, settings).is_dir()
    assert not list(folder.parent.glob(".*partial"))


def test_models_list_shows_format_and_place(model_cache: Path) -> None:
    settings = settings_for(model_cache)
    found = {m.repo_id: m for m in list_cached(settings)}
    small = found["facebook/musicgen-small"]
    assert (
        small.format == "audiocraft"
        and small.path == model_cache / "models--facebook--musicgen-small" / "snapshots" / REV
    )
    assert small.revision == "not converted yet"
    assert found["t5-base"].format == "transformers"
    load_model("small", settings)
    after = {m.repo_id: m for m in list_cached(settings)}["facebook/musicgen-small"]
    assert after.format == "audiocraft" and after.revision.startswith("audiocraft-")  # converted now


def test_a_local_fine_tune_folder(model_cache: Path, tmp_path: Path) -> None:
    """``--model ./my-finetune``: a folder with the two files audiocraft's export functions write."""
    tune = tmp_path / "my-finetune"
    tune.mkdir()
    for f in (DATA / "mono").iterdir():
        shutil.copy(f, tune / f.name)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        lm = load_model("./my-finetune", settings_for(model_cache))
    finally:
        os.chdir(cwd)
    assert lm.repo_id == str(tune) and lm.revision.startswith("audiocraft-")
    with pytest.raises(ModelLoadingError, match=r"my-finetune: no state_dict.bin in this folder"):
        (tune / audiocraft.LM_FILE).unlink()
        load_model(str(tune), settings_for(model_cache))


FINE_TUNED = """\
title: Fine-tune
bpm: 120
generation: {model: ./my-finetune}
sections:
  - {name: a, prompt: techno, duration_s: 4}
"""


def test_a_folder_model_in_an_arrangement_is_relative_to_the_file(
    model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model: ./my-finetune`` means the folder beside the arrangement, from any working folder, and the
    segment's key follows the folder's content, not where it is (a project folder can move)."""
    from composer import api

    project = tmp_path / "project"
    tune = project / "my-finetune"
    tune.mkdir(parents=True)
    for f in (DATA / "mono").iterdir():
        shutil.copy(f, tune / f.name)
    (project / "song.yaml").write_text(FINE_TUNED)
    settings = settings_for(model_cache)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    ensure_available(str(tune), settings)
    [seg] = api.plan(project / "song.yaml", settings=settings).segments
    assert seg.model == seg.repo_id == str(tune.resolve()) and seg.revision.startswith("audiocraft-")
    moved = project.rename(tmp_path / "moved")
    ensure_available(str(moved / "my-finetune"), settings)
    [again] = api.plan(moved / "song.yaml", settings=settings).segments
    assert again.model == str((moved / "my-finetune").resolve()) and again.key == seg.key


def refused(model_cache: Path, edit, name: str = "small") -> str:  # noqa: ANN001
    """The one-line error for model ``name`` (mono small) with ``edit`` applied to its package."""
    settings = settings_for(model_cache)
    found = audiocraft.find(f"facebook/musicgen-{name}", settings)
    assert found is not None
    lm = found.folder / audiocraft.LM_FILE
    package = audiocraft.read_package(lm)
    edit(package)
    lm.unlink()
    torch.save(package, lm)
    with pytest.raises(ModelLoadingError) as caught:
        load_model(name, settings)
    message = str(caught.value)
    assert "\n" not in message
    assert not list((model_cache / audiocraft.CONVERTED).glob("*/model.safetensors")), "nothing half-converted"
    return message


@pytest.mark.parametrize(("name", "old", "new", "field"), [
    ("small", "modeling: delay", "modeling: unroll", "codebooks_pattern.modeling"),
    ("small", "name: t5-base", "name: clap", "conditioners.description.t5.name"),
    ("small", "sample_rate: 32000", "sample_rate: 24000", "sample_rate"),
    ("small", "bias_attn: false", "bias_attn: true", "transformer_lm.bias_attn"),
    ("small", "positional_embedding: sin", "positional_embedding: rope", "transformer_lm.positional_embedding"),
    ("melody", "radix2_exp: 14", "radix2_exp: 12", "conditioners.self_wav.chroma_stem.radix2_exp"),
    ("melody", "argmax: true", "argmax: false", "conditioners.self_wav.chroma_stem.argmax"),
    ("melody", "cross: []", "cross: [description]", "fuser.cross"),
])  # fmt: skip
def test_settings_composer_cannot_honour_are_refused_by_field(model_cache: Path, name: str, old: str, new: str,
                                                             field: str) -> None:  # fmt: skip
    def edit(package: dict) -> None:
        assert old in package["xp.cfg"]
        package["xp.cfg"] = package["xp.cfg"].replace(old, new, 1)

    message = refused(model_cache, edit, name)
    assert f"xp.cfg {field}:" in message and "state_dict.bin" in message


def test_truncated_tampered_and_pickled_code_files(model_cache: Path) -> None:
    settings = settings_for(model_cache)
    found = audiocraft.find("facebook/musicgen-small", settings)
    assert found is not None
    lm = found.folder / audiocraft.LM_FILE
    data = lm.read_bytes()
    lm.unlink()
    lm.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadingError, match=r"state_dict.bin: unreadable \(truncated or damaged\?\)"):
        load_model("small", settings)
    lm.write_bytes(b"not a torch file at all")
    with pytest.raises(ModelLoadingError, match=r"state_dict.bin: unreadable"):
        load_model("small", settings)
    torch.save({"xp.cfg": "a: 1", "best_state": {}, "evil": Settings}, lm)  # a class: code to run on load
    with pytest.raises(ModelLoadingError, match=r"state_dict.bin: refused: it holds more than tensors"):
        load_model("small", settings)
    assert not list((model_cache / audiocraft.CONVERTED).glob("*/model.safetensors"))


def test_missing_t5_names_the_command_that_fetches_it(model_cache: Path) -> None:
    shutil.rmtree(model_cache / "hub" / "models--t5-base")
    with pytest.raises(ModelLoadingError, match=r"the text encoder t5-base is not in .*`compose models pull t5-base`"):
        load_model("small", settings_for(model_cache))


def test_transformers_files_are_preferred(model_cache: Path, tiny_cache: Path) -> None:
    """Where the transformers checkpoint is cached too, it is what loads (no conversion)."""
    shutil.copytree(tiny_cache / "hub" / "models--composer-tiny--musicgen-small",
                    model_cache / "hub" / "models--facebook--musicgen-small", symlinks=True)  # fmt: skip
    lm = load_model("small", settings_for(model_cache))
    assert not lm.revision.startswith("audiocraft-")
    assert not (model_cache / audiocraft.CONVERTED).exists()
