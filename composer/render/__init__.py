"""Plan -> audio: run the engine over a plan's segments with a content-addressed cache (stage 3)."""
