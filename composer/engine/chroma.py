"""The chromagram that conditions MusicGen's melody models, without torchaudio.

Computed as transformers' ``MusicgenMelodyFeatureExtractor`` does (which needs torchaudio): the
reference at 32 kHz, mono; a Hann-windowed power spectrogram (n_fft 16384, hop 4096, centred); the
librosa chroma filter bank; then, per frame, a one-hot vector of the strongest pitch class. Only
the argmax survives, so the spectrogram's scaling does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from composer.engine.kernels import threads

if TYPE_CHECKING:
    import torch

CHROMA_SAMPLE_RATE = 32_000
N_FFT = 16_384
HOP = 4_096
NUM_CHROMA = 12
FRAMES_PER_S = CHROMA_SAMPLE_RATE / HOP  # 7.8125


def chroma(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """One-hot chroma (frames, 12) of audio (channels, samples); pitch class 0 is C.

    Raises:
        ValueError: empty or non-finite audio.
    """
    import torch

    from composer.audio.dsp import resample, to_mono

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"melody audio must be (channels, samples) with samples, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("melody audio contains NaN or infinite samples")
    mono = resample(to_mono(audio), sample_rate, CHROMA_SAMPLE_RATE)[0]
    wave = torch.as_tensor(np.ascontiguousarray(mono))
    if wave.shape[0] < N_FFT:  # as transformers does: centre short audio in one FFT frame
        pad = N_FFT - wave.shape[0]
        wave = torch.nn.functional.pad(wave, (pad // 2, pad - pad // 2))
    with threads(1):  # a near tie in the argmax must not fall another way on another thread count
        return _chroma(wave)


def _chroma(wave: torch.Tensor) -> np.ndarray:
    import torch
    from transformers.audio_utils import chroma_filter_bank

    window = torch.hann_window(N_FFT)
    spec = torch.stft(wave, N_FFT, HOP, N_FFT, window, center=True, pad_mode="reflect", return_complex=True).abs() ** 2
    filters = torch.from_numpy(
        chroma_filter_bank(sampling_rate=CHROMA_SAMPLE_RATE, num_frequency_bins=N_FFT, tuning=0, num_chroma=NUM_CHROMA)
    ).float()
    raw = filters @ spec  # (12, frames)
    one_hot = torch.zeros(raw.shape[1], NUM_CHROMA)
    one_hot.scatter_(1, raw.argmax(0)[:, None], 1.0)
    return one_hot.numpy()


def window_chroma(full: np.ndarray, start_s: float, length: int) -> np.ndarray:
    """The chroma frames conditioning a model window that starts ``start_s`` into the segment.

    The reference is looped when it is shorter than the window (as transformers pads it), and the
    result has exactly ``length`` frames.
    """
    first = int(start_s * FRAMES_PER_S)
    reps = -(-(first + length) // max(full.shape[0], 1))
    looped = np.concatenate([full] * max(reps, 1))
    return looped[first : first + length]
