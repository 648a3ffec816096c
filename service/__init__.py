"""The gigasynth HTTP service (FastAPI): job queue, tiles and viewer."""
