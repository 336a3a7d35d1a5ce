"""Finished audio -> files: mix, stems, manifest, markers, picture (stage 5)."""
