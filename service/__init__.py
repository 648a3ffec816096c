"""The gigasynth HTTP service (FastAPI): job queue, tiles and viewer.

Its source is the repository's `service/` folder; it is installed under the import name
`gigasynth_service` (pyproject.toml maps the folder), which no other distribution uses.
"""
