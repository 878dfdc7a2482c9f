"""Settings from the environment (prefix ``BOREALIS_``) and a ``.env`` file in the working directory."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting has a value Borealis cannot use; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BOREALIS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret_key: str | None = None
    public_url: str | None = None
    # The seed's local-development set-up: a tunnel URL that Dynatrace can reach.
    ngrok_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NGROK_URL", "BOREALIS_NGROK_URL")
    )
    allow_private_dynatrace: bool = False
    # Notification destinations on loopback or private networks (off: only public addresses).
    allow_private_destinations: bool = False
    dynatrace_ca_bundle: Path | None = None
    dynatrace_timeout: float = Field(default=15.0, gt=0, le=300)
    backfill_hours: int = Field(default=72, ge=0, le=24 * 90)
    sync_interval: int = Field(default=300, ge=10)
    # Dynatrace API calls in flight at once per connection, in each process (429s still apply on top).
    dynatrace_max_concurrent_calls: int = Field(default=4, ge=1, le=64)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Webhook writer processes per server on PostgreSQL (None: one per two cores, from 1 to 8). A
    # user's deliveries go to one at a time; SQLite takes one writer at a time, so it has one.
    webhook_writers: int | None = Field(default=None, ge=1, le=32)
    # Slow clients (``server.py``): seconds for a request's headers to arrive, the longest pause in
    # its body, and how long an idle keep-alive connection stays open. Dynatrace sends in one go.
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    body_timeout: float = Field(default=30.0, gt=0, le=600)
    keep_alive_timeout: float = Field(default=15.0, gt=0, le=600)
    log_level: str = "INFO"
    # Web sessions: the longest a login lasts, and how long it lasts without a request.
    session_lifetime_seconds: int = Field(default=14 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    session_idle_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    # Login throttling: failed logins allowed per account (by email, existing or not) and per client
    # address, then each further failure locks that key for a delay doubling from the first lock to the
    # cap. A key's count is forgotten after this long without a failure; a login resets its account.
    # How long the audit log keeps an entry (days); the worker removes older ones hourly.
    audit_retention_days: int = Field(default=365, ge=1, le=10 * 365)
    login_free_failures: int = Field(default=5, ge=1, le=1000)
    login_address_free_failures: int = Field(default=20, ge=1, le=100_000)
    login_lock_seconds: float = Field(default=1.0, gt=0, le=3600)
    login_lock_max_seconds: float = Field(default=900.0, gt=0, le=24 * 3600)
    login_failures_forgotten_after_seconds: int = Field(default=24 * 3600, ge=60, le=90 * 24 * 3600)
    # Root-cause analysis: automatic runs per user per hour (on-demand runs are not counted against it),
    # the wait before re-running when an incident gains problems, and how far before the start to look.
    rca_rate_limit_per_hour: int = Field(default=60, ge=0)
    rca_debounce_seconds: int = Field(default=60, ge=0, le=3600)
    rca_lookback_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # The walk below the symptom: how many calls deep and how many entities in all, and the baseline
    # before the start that every metric is judged against.
    rca_max_depth: int = Field(default=4, ge=1, le=10)
    rca_max_entities: int = Field(default=100, ge=5, le=1000)
    rca_baseline_minutes: int = Field(default=120, ge=15, le=7 * 24 * 60)
    # Optional narrative by any OpenAI-compatible endpoint (OpenAI, Azure, Ollama, vLLM, ...).
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_timeout: float = Field(default=60.0, gt=0, le=600)
    llm_max_tool_calls: int = Field(default=4, ge=0, le=20)
    # USD per million tokens, to record the cost of each RCA (0: cost not tracked).
    llm_input_cost_per_million: float = Field(default=0.0, ge=0)
    llm_output_cost_per_million: float = Field(default=0.0, ge=0)

    @field_validator("public_url", "ngrok_url", "llm_base_url")
    @classmethod
    def _public_url_has_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("dynatrace_ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no PEM file at {value}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'borealis.db').resolve()}"

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url and self.llm_model)

    @property
    def public_base_url(self) -> str | None:
        """Where Dynatrace reaches us: the operator's public URL, else the development tunnel."""
        return self.public_url or self.ngrok_url


def load_settings() -> Settings:
    """Read the settings, turning a validation failure into one message per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = "NGROK_URL" if field in ("ngrok_url", "NGROK_URL") else f"BOREALIS_{field.upper()}"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
