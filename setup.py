"""Which packages the distribution holds (pyproject.toml has everything else).

The HTTP service's source is the `service/` folder, but a top-level package named
`service` in site-packages would collide with anything; it installs as `gigasynth_service`.
pyproject.toml's `packages.find` cannot rename a folder, hence this file.
"""

from setuptools import find_namespace_packages, setup

SERVICE = "gigasynth_service"
# Every folder under service/ but its static files' (package data, listed in pyproject.toml)
# and caches.
_SERVICE_SUBPACKAGES = [
    f"{SERVICE}.{name}"
    for name in find_namespace_packages("service", exclude=["static", "static.*", "*__pycache__"])
]

setup(
    packages=[
        *find_namespace_packages(include=["gigasynth", "gigasynth.*"], exclude=["*__pycache__"]),
        SERVICE,
        *_SERVICE_SUBPACKAGES,
    ],
    package_dir={SERVICE: "service"},
)
