"""Audio helpers: float32 numpy (channels, samples) with an explicit sample rate."""
