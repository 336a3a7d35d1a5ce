import torch


class _NoSeparation(torch.nn.Module):
    sources = ["drums", "bass", "other", "vocals"]
    samplerate = 44100
    audio_channels = 2


def get_model(name):
    return _NoSeparation()
