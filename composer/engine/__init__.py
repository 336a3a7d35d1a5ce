"""The engine: MusicGen weights in, tokens and audio out.

``composer.engine.models.load_model`` is the only door to weights. Importing this package does not
import torch; the heavy modules are imported where they are used.
"""
