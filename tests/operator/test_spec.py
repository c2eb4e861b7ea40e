"""The operator's spec model: what the CRD schema cannot say (cross-field rules), with readable messages."""

from __future__ import annotations

from typing import Any

import pytest
from sentiment_operator.spec import InvalidSpec, PipelineSpec, parse_spec

REQUIRED: dict[str, Any] = {
    "source": {"bootstrapServers": "k:9092", "topic": "t"},
    "staging": {"mongoSecretRef": {"name": "mongo"}},
    "sink": {"host": "db", "secretRef": {"name": "mysql"}},
}


def test_minimal_spec_takes_documented_defaults():
    spec = parse_spec(REQUIRED)
    assert spec.state == "running"
    assert spec.model.name == "default"
    assert spec.sink.table == "dw_messages"
    assert spec.autoscaling.enabled is False


def test_autoscaling_min_above_max_names_both_fields():
    with pytest.raises(InvalidSpec) as raised:
        parse_spec({**REQUIRED, "autoscaling": {"minReplicas": 3, "maxReplicas": 2}})
    assert str(raised.value) == (
        "spec.autoscaling: autoscaling.minReplicas (3) must be <= autoscaling.maxReplicas (2)"
    )


def test_sasl_without_a_secret_is_rejected():
    source = {**REQUIRED["source"], "securityProtocol": "SASL_SSL"}
    with pytest.raises(InvalidSpec, match=r"needs source\.authSecretRef"):
        parse_spec({**REQUIRED, "source": source})


def test_unknown_fields_are_rejected_rather_than_ignored():
    with pytest.raises(InvalidSpec, match=r"spec\.sink\.password"):
        parse_spec({**REQUIRED, "sink": {**REQUIRED["sink"], "password": "x"}})


def test_every_referenced_secret_is_listed_with_the_keys_read_from_it():
    source = {**REQUIRED["source"], "securityProtocol": "SASL_PLAINTEXT", "authSecretRef": {"name": "kafka"}}
    spec = PipelineSpec.model_validate({**REQUIRED, "source": source})
    assert spec.secret_refs() == {
        "kafka": ("password", "username"),
        "mongo": ("uri",),
        "mysql": ("password", "username"),
    }


def test_one_table_says_which_secret_key_feeds_which_worker_setting():
    from botocore.credentials import EnvProvider
    from mlflow import environment_variables as mlflow_env
    from sentiment_operator.builders import secret_env, setting_env
    from sentiment_operator.spec import CREDENTIALS, SecretRef
    from sentiment_workers.config import WorkerConfig
    from sentiment_workers.http_source.settings import HttpSourceConfig

    http = {
        "url": "https://api.example/v1",
        "headersSecretRef": {"name": "api"},
        "landing": {"url": "s3://lake/raw", "credentialsSecretRef": {"name": "lake"}},
    }
    source = {**REQUIRED["source"], "securityProtocol": "SASL_SSL", "authSecretRef": {"name": "kafka"}}
    model = {"tracking": {"uri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlflow"}}}
    spec = PipelineSpec.model_validate(
        {**REQUIRED, "source": {**source, "kind": "http", "http": http}, "model": model}
    )
    for credential in CREDENTIALS:
        field = credential.setting
        known = WorkerConfig.model_fields.keys() | {f"http_{f}" for f in HttpSourceConfig.model_fields}
        # MLflow's own variables, as its client in the inference workers reads them.
        known |= {name.lower() for name in vars(mlflow_env) if name.startswith("MLFLOW_TRACKING_")}
        # botocore's own credential variables, as s3fs in the poller reads them.
        known |= {v.lower() for v in (EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY, *EnvProvider.TOKENS)}
        assert field in known, credential
        assert isinstance(spec.secret_ref(credential.ref), SecretRef), credential
    # The Secret checks and the workers' secretKeyRef entries are both read off the table.
    assert secret_env(spec) == {
        setting_env(c.setting): (spec.secret_ref(c.ref).name, c.key)  # type: ignore[union-attr]
        for c in CREDENTIALS
    }
    assert secret_env(spec)["SENTIMENT_HTTP_HEADERS"] == ("api", "headers")
    assert secret_env(spec)["AWS_SECRET_ACCESS_KEY"] == ("lake", "secretAccessKey")
    plain = PipelineSpec.model_validate(REQUIRED)
    assert "SENTIMENT_KAFKA_SASL_PASSWORD" not in secret_env(plain), "no Secret referenced: no credential"
    assert set(plain.secret_refs()) == {"mongo", "mysql"}


HTTP = {"url": "https://api.example/v1/posts?limit=100"}


def test_an_http_source_needs_its_kind_and_the_kind_needs_the_source():
    with pytest.raises(InvalidSpec, match=r"source\.kind http needs source\.http"):
        parse_spec({**REQUIRED, "source": {**REQUIRED["source"], "kind": "http"}})
    with pytest.raises(InvalidSpec, match=r"source\.http is set but source\.kind is kafka"):
        parse_spec({**REQUIRED, "source": {**REQUIRED["source"], "http": HTTP}})
    spec = parse_spec({**REQUIRED, "source": {**REQUIRED["source"], "kind": "http", "http": HTTP}})
    assert spec.source.http is not None and spec.source.http.paging.type.setting == "cursor"


def test_the_headers_secret_is_a_credential_of_the_http_source():
    http = {**HTTP, "headersSecretRef": {"name": "api-headers"}}
    spec = parse_spec({**REQUIRED, "source": {**REQUIRED["source"], "kind": "http", "http": http}})
    assert spec.credentials()["http_headers"] == ("api-headers", "headers")
    assert spec.secret_refs()["api-headers"] == ("headers",)


def _landing(**landing: Any) -> dict[str, Any]:
    http = {**HTTP, "landing": landing}
    return {**REQUIRED, "source": {**REQUIRED["source"], "kind": "http", "http": http}}


def test_the_s3_settings_of_the_landing_store_need_an_s3_url():
    """endpointUrl, region and the credentials configure the poller's S3 client: without an s3:// landing
    url nothing would read them, which is a mistake worth saying."""
    minio = {"endpointUrl": "http://minio.storage:9000", "credentialsSecretRef": {"name": "lake"}}
    with pytest.raises(InvalidSpec) as empty:
        parse_spec(_landing(**minio))
    with pytest.raises(InvalidSpec) as path:
        parse_spec(_landing(url="/data/landing", region="eu-west-1"))

    assert str(empty.value) == (
        "spec.source.http.landing: endpointUrl and credentialsSecretRef configure the S3 client of an s3:// "
        "landing store, but landing.url is empty (pages land in the staging MongoDB): set landing.url to "
        "s3://bucket/prefix, or remove endpointUrl and credentialsSecretRef"
    )
    assert str(path.value) == (
        "spec.source.http.landing: region configures the S3 client of an s3:// landing store, but "
        "landing.url '/data/landing' is not an s3:// URL: set landing.url to s3://bucket/prefix, or remove "
        "region"
    )
    spec = parse_spec(_landing(url="s3://lake/raw/http", region="eu-west-1", **minio))
    assert spec.source.http is not None and spec.source.http.landing.s3
    assert parse_spec(_landing(url="s3a://lake/raw")).source.http is not None, "s3fs serves s3a:// too"


def test_the_landing_credentials_are_two_required_keys_and_an_optional_session_token():
    spec = parse_spec(_landing(url="s3://lake/raw", credentialsSecretRef={"name": "lake"}))
    assert spec.secret_refs()["lake"] == ("accessKeyId", "secretAccessKey", "sessionToken")
    assert spec.optional_keys() == {"lake": ("sessionToken",)}
    assert spec.credentials()["aws_access_key_id"] == ("lake", "accessKeyId")
    assert spec.credentials()["aws_session_token"] == ("lake", "sessionToken")
    without = parse_spec(_landing(url="s3://lake/raw"))
    assert not any(setting.startswith("aws_") for setting in without.credentials()), "the pod's identity"


def test_a_registry_model_needs_a_tracking_server():
    with pytest.raises(InvalidSpec) as raised:
        parse_spec({**REQUIRED, "model": {"name": "models:/tweets@champion"}})
    assert str(raised.value) == (
        "spec.model: model.name models:/tweets@champion is resolved by an MLflow tracking server: "
        "set spec.model.tracking.uri (and credentialsSecretRef if the server wants credentials)"
    )
    with pytest.raises(InvalidSpec, match=r"a registry model is models:/NAME@ALIAS or models:/NAME/VERSION"):
        parse_spec(
            {**REQUIRED, "model": {"name": "models:/tweets", "tracking": {"uri": "http://mlflow:5000"}}}
        )
    spec = parse_spec(
        {**REQUIRED, "model": {"name": "models:/tweets/3", "tracking": {"uri": "http://mlflow:5000"}}}
    )
    assert spec.model.registry and spec.model.cache_size_limit == "2Gi"


def test_the_registry_pattern_is_the_workers_own():
    """The operator may not import sentiment_workers.model: it keeps a copy of the pattern, equal to it."""
    from sentiment_operator.spec import REGISTRY_MODEL, REGISTRY_PREFIX
    from sentiment_workers.model import source

    assert source._REGISTRY_URI.pattern == REGISTRY_MODEL
    assert REGISTRY_PREFIX == source.REGISTRY_PREFIX


def test_the_tracking_credentials_are_optional_keys_of_one_secret():
    """A Secret with only a token works, as does one with username and password: every key is optional."""
    model = {"tracking": {"uri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlflow"}}}
    spec = parse_spec({**REQUIRED, "model": model})
    assert spec.secret_refs()["mlflow"] == ("password", "token", "username")
    assert spec.optional_keys() == {"mlflow": ("password", "token", "username")}
    assert spec.credentials()["mlflow_tracking_token"] == ("mlflow", "token")
    # The same Secret also read as a required credential (here: the warehouse's) keeps those keys required.
    shared = parse_spec(
        {
            **REQUIRED,
            "sink": {**REQUIRED["sink"], "secretRef": {"name": "mlflow"}},
            "model": model,
        }
    )
    assert shared.optional_keys() == {"mlflow": ("token",)}


def test_mode_defaults_to_lease_and_takes_fused():
    assert parse_spec(REQUIRED).mode == "lease"
    assert parse_spec({**REQUIRED, "mode": "fused"}).mode == "fused"
    with pytest.raises(InvalidSpec, match=r"spec\.mode"):
        parse_spec({**REQUIRED, "mode": "batch"})
