"""Segments -> one track: crossfades, loudness matching, true-peak limiting (stage 4). Pure numpy."""
