"""Configuration of the Metabase provisioner, from ``SENTIMENT_METABASE_*`` environment variables.

Credentials arrive as environment variables filled from Kubernetes Secrets (``secretKeyRef``) or as
files (``*_FILE`` variants, e.g. a mounted Secret); they are never command-line arguments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiment_workers.bi.questions import DEFAULT_DASHBOARD_NAME, BySentimentDisplay, PerDayDisplay
from sentiment_workers.config import SQL_IDENTIFIER

ENV_PREFIX = "SENTIMENT_METABASE_"


class MetabaseSettings(BaseSettings):
    """Where Metabase is, who administers it, and which warehouse (read-only user) it should show."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore")

    url: str = Field("http://127.0.0.1:3000", pattern=r"^https?://", description="Metabase base URL.")
    wait_timeout_seconds: float = Field(600.0, gt=0, description="How long to wait for /api/health.")
    request_timeout_seconds: float = Field(60.0, gt=0)
    site_name: str = "Sentiment Pipeline"

    admin_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    admin_password: SecretStr | None = None
    admin_password_file: Path | None = None
    admin_first_name: str = "Sentiment"
    admin_last_name: str = "Admin"

    database_name: str = Field("Sentiment warehouse", min_length=1, max_length=254)
    dashboard_name: str = Field(DEFAULT_DASHBOARD_NAME, min_length=1, max_length=254)
    by_sentiment_display: BySentimentDisplay = Field(
        "bar", description="Metabase display of 'Messages by sentiment' (specified: bar)."
    )
    per_day_display: PerDayDisplay = Field(
        "line", description="Metabase display of 'Messages per day' (specified: line)."
    )

    warehouse_host: str = Field(min_length=1)
    warehouse_port: int = Field(3306, ge=1, le=65535)
    warehouse_database: str = Field("sentiment", pattern=SQL_IDENTIFIER)
    warehouse_table: str = Field("dw_messages", pattern=SQL_IDENTIFIER)
    warehouse_user: str = Field(min_length=1, description="The read-only BI user.")
    warehouse_password: SecretStr | None = None
    warehouse_password_file: Path | None = None
    warehouse_ssl: bool = False
    warehouse_jdbc_options: str = Field(
        "allowPublicKeyRetrieval=true",
        description="Extra JDBC options; MySQL 8 accounts (caching_sha2_password) without TLS need "
        "allowPublicKeyRetrieval=true.",
    )

    @model_validator(mode="after")
    def _read_secret_files(self) -> MetabaseSettings:
        for name in ("admin_password", "warehouse_password"):
            path: Path | None = getattr(self, f"{name}_file")
            if getattr(self, name) is None and path is not None:
                try:
                    value = path.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(f"cannot read {ENV_PREFIX}{name.upper()}_FILE={path}: {exc}") from exc
                object.__setattr__(self, name, SecretStr(value))
            if getattr(self, name) is None:
                raise ValueError(f"set {ENV_PREFIX}{name.upper()} or {ENV_PREFIX}{name.upper()}_FILE")
        return self

    def admin_secret(self) -> str:
        assert self.admin_password is not None  # guaranteed by the validator
        return self.admin_password.get_secret_value()

    def warehouse_secret(self) -> str:
        assert self.warehouse_password is not None  # guaranteed by the validator
        return self.warehouse_password.get_secret_value()
