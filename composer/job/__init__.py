"""A render job, stages 1-5 from arrangement file to files on disk: prepare (load, check, apply the
folder's choices, plan), generate what the cache lacks (here, or on a Ray cluster), re-roll bad
transitions, export. The CLI and :mod:`composer.api` drive it."""
