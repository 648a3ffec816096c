"""HTTP routes of the gigasynth service, one module per part of the API."""
