"""Request and response bodies of the HTTP API (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Format = Literal["ome-zarr", "ome-tiff", "preview"]
State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
DEFAULT_FORMATS: tuple[Format, ...] = ("ome-zarr", "ome-tiff")


class _Request(BaseModel):
    """A request body: strict (no strings for numbers, no booleans), except that a JSON
    number with no fraction (2048.0) is the integer it is, as JSON Schema's "integer"
    takes it, in the fields typed int."""

    @model_validator(mode="before")
    @classmethod
    def _integral(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        ints = {
            name
            for name, field in cls.model_fields.items()
            if field.annotation in (int, int | None)
        }
        return {
            key: int(value)
            if key in ints and isinstance(value, float) and value.is_integer()
            else value
            for key, value in data.items()
        }


# Hard bounds of the schema; the deployment's own (lower) limits are checked in quotas.py.
HARD_MAX_SIDE = 1 << 20
HARD_MAX_STEPS = 100_000


class JobRequest(_Request):
    """A synthesis job: which model (or cascade), what size, which seed and sampler.

    A cascade job names a cascade from GET /v1/models and, for a cascade whose layout is
    "given", an uploaded layout (POST /v1/layouts); the layout's size times the cascade's
    factor is the slide's, so width and height may be left out. The stages bring their
    own samplers and steps: `sampler`, `steps` and `mpp` are not taken with a cascade.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"model": "builtin:skin", "width": 2048, "height": 2048, "seed": 7},
                {
                    "model": "builtin:tiny-pathology",
                    "width": 256,
                    "height": 256,
                    "seed": 7,
                    "steps": 10,
                },
            ]
        },
    )

    model: str = Field(
        min_length=1,
        max_length=200,
        description="a model's or a cascade's name from GET /v1/models",
    )
    width: int | None = Field(
        None,
        ge=1,
        le=HARD_MAX_SIDE,
        description="pixels; required, except for a cascade job with a layout (its size "
        "times the cascade's factor)",
    )
    height: int | None = Field(
        None, ge=1, le=HARD_MAX_SIDE, description="pixels; required as width is"
    )
    layout: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="a cascade job's layout: the id of an image uploaded with POST /v1/layouts",
    )
    seed: int = Field(0, ge=0, le=(1 << 63) - 1)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    steps: int | None = Field(
        50, ge=1, le=HARD_MAX_STEPS, description="DDIM steps (ignored by ddpm, which runs all T)"
    )
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM noise scale")
    tile: int = Field(
        512,
        ge=0,
        le=65_536,
        description="engine tile side in px, the unit of synthesis work (not "
        "the DeepZoom tile a viewer reads); 0 = the whole image "
        "on one device",
    )
    formats: list[Format] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS), min_length=1, max_length=3
    )
    mpp: float | None = Field(
        None,
        ge=0.01,
        le=1000.0,
        description=(
            "µm per pixel: the model's own (GET /v1/models), which is the default; another "
            "value is refused with 422. Only a model that records none takes it"
        ),
    )


class Progress(BaseModel):
    phase: str
    step: int
    start_step: int = Field(
        description="step this attempt started from (a resumed job: its last saved step)"
    )
    total_steps: int
    tiles_done: int = Field(description="engine tiles of the current diffusion step done")
    tiles_total: int = Field(description="engine tiles per diffusion step")
    fraction: float
    stage: int | None = Field(
        None, description="a cascade job: the stage running (1-based); None for a model's job"
    )
    stages: int | None = Field(None, description="a cascade job: how many stages it has")
    stage_label: str | None = Field(None, description='a cascade job: "stage 2 of 2"')


class JobView(BaseModel):
    """A job as a client sees it."""

    id: str
    state: State
    cancel_requested: bool
    request: JobRequest
    created: float
    started: float | None
    finished: float | None
    attempts: int
    progress: Progress | None
    throughput_mpx_steps_per_s: float | None
    eta_s: float | None
    error: str | None
    provenance: dict[str, object] | None
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None


class ModelList(BaseModel):
    models: list[dict[str, object]]


class LayoutView(BaseModel):
    """An uploaded layout image: name its id as a cascade job's `layout`."""

    id: str = Field(description="the sha256 of the uploaded bytes")
    media_type: str
    width: int = Field(description="pixels")
    height: int = Field(description="pixels")
    bytes: int
    created: float


class LayoutList(BaseModel):
    layouts: list[LayoutView]


class ErrorBody(BaseModel):
    """Every error the API answers (4xx, 503): one line naming the problem, nothing else."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"error": "no such job: (malformed id)"}]}
    )

    error: str = Field(description="what went wrong, in one line")


class LinkRequest(_Request):
    """A signed link to mint for one job (POST /v1/jobs/{id}/links, with the owner's token)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ttl_s: int | None = Field(
        None,
        ge=1,
        description="lifetime in seconds (default "
        "GIGASYNTH_LINK_TTL_S, at most GIGASYNTH_LINK_MAX_TTL_S)",
    )


class SignedLink(BaseModel):
    """A link granting read access to one job until `expires`, while its token stays valid."""

    viewer: str
    status: str
    query: str = Field(description="`exp=...&sig=...`, to append to the job's URLs")
    expires: int = Field(
        description="absolute expiry, Unix seconds (never past the minting token's own)"
    )


class TileSignature(BaseModel):
    """A short-lived signature for the job's DeepZoom descriptor and tiles only."""

    query: str = Field(description="`exp=...&sig=...`, to append to the DZI and tile URLs")
    expires_in_s: float = Field(description="seconds until it expires")
    link_expires_in_s: float | None = Field(
        description="seconds until the link it was asked with expires (None: a token)"
    )
