"""Pure builders: the same spec always gives the same manifests; changes land exactly where they should."""

from __future__ import annotations

from sentiment_operator.builders import (
    ANNOTATION_SECRETS_VERSION,
    CONSUMER,
    INFERENCE,
    Owner,
    build_children,
    build_deployment,
    component_secrets,
    config_hash,
    desired_replicas,
    worker_settings,
)
from sentiment_operator.spec import parse_spec
from sentiment_workers.config import WorkerConfig

OWNER = Owner(name="p", namespace="ns", uid="1234")
BASE = {
    "source": {"bootstrapServers": "k:9092", "topic": "t"},
    "staging": {"mongoSecretRef": {"name": "mongo"}},
    "sink": {"host": "db", "port": 3307, "secretRef": {"name": "mysql"}},
}


def test_worker_settings_are_read_back_by_the_workers_own_config():
    spec = parse_spec({**BASE, "model": {"name": "m", "backend": "torch-int8", "batchSize": 8}})
    config = WorkerConfig.model_validate(
        {k.removeprefix("SENTIMENT_").lower(): v for k, v in worker_settings(spec).items()}
    )
    assert config.kafka_topic == "t"
    assert config.mysql_port == 3307
    assert config.model_name == "m"
    assert config.model_backend == "torch-int8"
    assert config.model_batch_size == 8


def test_model_change_touches_only_the_inference_hash():
    before, after = parse_spec(BASE), parse_spec({**BASE, "model": {"name": "other"}})
    assert config_hash(before, INFERENCE) != config_hash(after, INFERENCE)
    assert config_hash(before, CONSUMER) == config_hash(after, CONSUMER)


def test_topic_change_touches_only_the_consumer_hash():
    after = parse_spec({**BASE, "source": {"bootstrapServers": "k:9092", "topic": "other"}})
    assert config_hash(parse_spec(BASE), CONSUMER) != config_hash(after, CONSUMER)
    assert config_hash(parse_spec(BASE), INFERENCE) == config_hash(after, INFERENCE)


def test_a_changed_secret_rolls_only_the_workers_that_read_it():
    """Environment variables from a Secret are read when a container starts: a fixed password reaches the
    workers only if their pods restart. The pod template carries a digest of the resourceVersion of each
    Secret its component reads (never the values): the MySQL Secret rolls inference only, the Mongo Secret
    both."""
    spec = parse_spec(BASE)
    assert component_secrets(spec, CONSUMER) == ["mongo"]
    assert component_secrets(spec, INFERENCE) == ["mongo", "mysql"]

    def versions(**changed: str) -> dict[str, str]:
        annotations = {}
        for component in (CONSUMER, INFERENCE):
            deployment = build_deployment(
                spec,
                OWNER,
                component,
                default_image="i",
                secret_versions={"mongo": "1", "mysql": "1", **changed},
            )
            annotations[component] = deployment["spec"]["template"]["metadata"]["annotations"][
                ANNOTATION_SECRETS_VERSION
            ]
        return annotations

    base, mysql, mongo = versions(), versions(mysql="2"), versions(mongo="2")
    assert mysql[INFERENCE] != base[INFERENCE] and mysql[CONSUMER] == base[CONSUMER]
    assert mongo[INFERENCE] != base[INFERENCE] and mongo[CONSUMER] != base[CONSUMER]
    without = build_deployment(spec, OWNER, INFERENCE, default_image="i")
    assert ANNOTATION_SECRETS_VERSION not in without["spec"]["template"]["metadata"]["annotations"]


def test_builders_are_deterministic():
    spec = parse_spec(BASE)
    assert build_children(spec, OWNER, default_image="img") == build_children(
        spec, OWNER, default_image="img"
    )


def test_paused_means_zero_and_autoscaling_is_clamped():
    paused = parse_spec({**BASE, "state": "paused", "consumer": {"replicas": 3}})
    assert desired_replicas(paused, CONSUMER) == 0
    assert desired_replicas(paused, INFERENCE, autoscaled=4) == 0
    scaled = parse_spec({**BASE, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 3}})
    assert desired_replicas(scaled, INFERENCE) == 2
    assert desired_replicas(scaled, INFERENCE, autoscaled=9) == 3


def test_service_monitor_only_when_asked_and_available():
    spec = parse_spec(BASE)
    kinds = [c["kind"] for c in build_children(spec, OWNER, default_image="i", service_monitor=True)]
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Service", "ServiceMonitor"]
    off = parse_spec({**BASE, "metrics": {"serviceMonitor": {"enabled": False}}})
    assert "ServiceMonitor" not in [
        c["kind"] for c in build_children(off, OWNER, default_image="i", service_monitor=True)
    ]


def test_placement_is_passed_through():
    spec = parse_spec(
        {
            **BASE,
            "inference": {
                "image": "custom:1",
                "nodeSelector": {"gpu": "yes"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                "resources": {"limits": {"cpu": 2, "memory": "3Gi"}},
            },
        }
    )
    pod = build_deployment(spec, OWNER, INFERENCE, default_image="i")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "yes"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["image"] == "custom:1"
    assert pod["containers"][0]["resources"] == {"limits": {"cpu": 2, "memory": "3Gi"}}


def test_worker_probes_ask_the_heartbeat_for_liveness_and_the_stores_for_readiness():
    spec = parse_spec(BASE)
    for component in (CONSUMER, INFERENCE):
        container = build_deployment(spec, OWNER, component, default_image="i")["spec"]["template"]["spec"][
            "containers"
        ][0]
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, (component, probe)
        # Ready means data can flow: /readyz fails while the worker cannot reach one of its stores.
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, component
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] == 300  # 5 min to load a model


def test_pull_policy_is_the_operators_unless_the_workload_sets_one():
    """The chart's worker.image.pullPolicy reaches the operator as its default; a CR may still override it."""
    spec = parse_spec({**BASE, "inference": {"imagePullPolicy": "Always"}})
    policies = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]["containers"][
            0
        ]["imagePullPolicy"]
        for d in build_children(spec, OWNER, default_image="i", default_pull_policy="Never")
        if d["kind"] == "Deployment"
    }
    assert policies == {CONSUMER: "Never", INFERENCE: "Always"}


def test_default_inference_requests_follow_the_backend():
    """onnx-int8 (the default) needs a quarter of a core and ~250 MiB; torch gets the larger default."""
    onnx = build_deployment(parse_spec(BASE), OWNER, INFERENCE, default_image="i")
    torch = build_deployment(
        parse_spec({**BASE, "model": {"backend": "torch"}}), OWNER, INFERENCE, default_image="i"
    )
    resources = [d["spec"]["template"]["spec"]["containers"][0]["resources"] for d in (onnx, torch)]
    assert resources[0] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    assert resources[1] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


HTTP_SOURCE = {
    "kind": "http",
    "bootstrapServers": "k:9092",
    "topic": "t",
    "http": {
        "url": "https://api.example/v1/posts?lang=en",
        "method": "POST",
        "headersSecretRef": {"name": "api-headers"},
        "paging": {"type": "nextLink", "nextLinkField": "links.next"},
        "recordsPath": "data.items",
        "idField": "post_id",
        "textField": "body",
        "intervalSeconds": 300,
        "landing": {"url": "s3://raw/api", "collection": "pages"},
    },
}


def _poller(spec_body: dict) -> dict:
    children = build_children(parse_spec(spec_body), OWNER, default_image="img")
    (poller,) = [c for c in children if c["metadata"]["name"] == "p-poller"]
    return poller


def test_the_poller_settings_are_read_back_by_the_pollers_own_config(monkeypatch):
    """The ConfigMap, the poller's own env and its Secret reference, loaded the way the poller loads them."""
    from sentiment_workers.http_source.settings import HttpPaging, HttpSourceConfig

    spec = parse_spec({**BASE, "source": HTTP_SOURCE})
    container = _poller({**BASE, "source": HTTP_SOURCE})["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for variable, value in worker_settings(spec).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("SENTIMENT_HTTP_SOURCE_NAME", env["SENTIMENT_HTTP_SOURCE_NAME"]["value"])
    assert env["SENTIMENT_HTTP_HEADERS"]["valueFrom"] == {
        "secretKeyRef": {"name": "api-headers", "key": "headers"}
    }
    monkeypatch.setenv("SENTIMENT_HTTP_HEADERS", '{"Authorization": "Bearer x"}')  # what the Secret holds

    config = HttpSourceConfig()

    assert config.url == "https://api.example/v1/posts?lang=en"
    assert config.method == "POST"
    assert config.paging is HttpPaging.NEXT_LINK
    assert config.next_link_field == "links.next"
    assert config.records_path == "data.items"
    assert (config.id_field, config.text_field) == ("post_id", "body")
    assert config.interval_seconds == 300
    assert (config.landing_url, config.landing_collection) == ("s3://raw/api", "pages")
    assert config.source_name == "p"
    assert (
        WorkerConfig.model_validate(
            {k.removeprefix("SENTIMENT_").lower(): v for k, v in worker_settings(spec).items()}
        ).kafka_topic
        == "t"
    )


def test_the_poller_is_one_replica_recreated_never_rolled_and_dressed_like_the_workers():
    poller = _poller({**BASE, "source": HTTP_SOURCE})
    consumer = build_deployment(parse_spec(BASE), OWNER, CONSUMER, default_image="img")
    pod, consumer_pod = poller["spec"]["template"]["spec"], consumer["spec"]["template"]["spec"]
    (container,), (consumer_container,) = pod["containers"], consumer_pod["containers"]

    assert poller["spec"]["replicas"] == 1
    assert poller["spec"]["strategy"] == {"type": "Recreate"}
    assert poller["metadata"]["labels"]["app.kubernetes.io/component"] == "poller"
    assert poller["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert container["command"] == ["sentiment-pipeline", "poll"]
    assert container["image"] == "img"
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    for same in ("securityContext", *probes, "volumeMounts", "ports"):
        assert container[same] == consumer_container[same], same
    for same in ("securityContext", "automountServiceAccountToken", "volumes"):
        assert pod[same] == consumer_pod[same], same
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
    assert secrets == {"SENTIMENT_MONGO_URI", "SENTIMENT_HTTP_HEADERS"}, "no MySQL credentials for the poller"

    paused = _poller({**BASE, "state": "paused", "source": HTTP_SOURCE})
    assert paused["spec"]["replicas"] == 0


def test_only_an_http_source_gets_a_poller_and_only_the_poller_its_headers():
    kafka = build_children(parse_spec(BASE), OWNER, default_image="img")
    deployments = [c["metadata"]["name"] for c in kafka if c["kind"] == "Deployment"]
    assert deployments == ["p-consumer", "p-inference"]
    spec = parse_spec({**BASE, "source": HTTP_SOURCE})
    assert component_secrets(spec, "poller") == ["api-headers", "mongo"]
    assert component_secrets(spec, CONSUMER) == ["mongo"]
    # A new URL restarts the poller, not the consumers nor inference.
    moved = {**HTTP_SOURCE, "http": {**HTTP_SOURCE["http"], "url": "https://api.example/v2/posts"}}
    after = parse_spec({**BASE, "source": moved})
    assert config_hash(spec, "poller") != config_hash(after, "poller")
    assert config_hash(spec, CONSUMER) == config_hash(after, CONSUMER)
    assert config_hash(spec, INFERENCE) == config_hash(after, INFERENCE)


def _deployments(spec_body: dict) -> dict[str, dict]:
    children = build_children(parse_spec(spec_body), OWNER, default_image="img")
    return {
        c["metadata"]["labels"]["app.kubernetes.io/component"]: c
        for c in children
        if c["kind"] == "Deployment"
    }


def _container_of(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_fused_mode_runs_no_consumer_and_inference_consumes_with_the_consumers_settings(monkeypatch):
    """infer --fused reads the Kafka settings (topic, consumer group, SASL credentials) the consumer read."""
    source = {
        **BASE["source"],
        "consumerGroup": "g",
        "securityProtocol": "SASL_SSL",
        "authSecretRef": {"name": "k"},
    }
    lease = _deployments({**BASE, "source": source})
    fused = _deployments({**BASE, "source": source, "mode": "fused"})

    assert sorted(lease) == [CONSUMER, INFERENCE]
    assert sorted(fused) == [INFERENCE]
    assert _container_of(lease[INFERENCE])["command"] == ["sentiment-pipeline", "infer"]
    container = _container_of(fused[INFERENCE])
    assert container["command"] == ["sentiment-pipeline", "infer", "--fused"]
    credentials = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert credentials == {
        "SENTIMENT_KAFKA_SASL_USERNAME": {"name": "k", "key": "username"},
        "SENTIMENT_KAFKA_SASL_PASSWORD": {"name": "k", "key": "password"},
        "SENTIMENT_MONGO_URI": {"name": "mongo", "key": "uri"},
        "SENTIMENT_MYSQL_USER": {"name": "mysql", "key": "username"},
        "SENTIMENT_MYSQL_PASSWORD": {"name": "mysql", "key": "password"},
    }
    # The ConfigMap and the credentials, loaded the way the fused worker loads them.
    spec = parse_spec({**BASE, "source": source, "mode": "fused"})
    for variable, value in worker_settings(spec).items():
        monkeypatch.setenv(variable, value)
    for variable in credentials:
        monkeypatch.setenv(variable, "from-the-secret")
    config = WorkerConfig()
    assert (config.kafka_topic, config.kafka_group_id, config.kafka_bootstrap_servers) == ("t", "g", "k:9092")
    assert config.kafka_security_protocol == "SASL_SSL" and config.kafka_sasl_username == "from-the-secret"
    assert (config.mysql_host, config.model_name) == ("db", "default")


def test_fused_inference_rolls_when_the_topic_or_the_kafka_secret_changes():
    fused = parse_spec({**BASE, "mode": "fused"})
    moved = parse_spec({**BASE, "mode": "fused", "source": {**BASE["source"], "topic": "other"}})
    assert config_hash(fused, INFERENCE) != config_hash(moved, INFERENCE)
    assert config_hash(fused, INFERENCE) != config_hash(parse_spec(BASE), INFERENCE)
    sasl = {**BASE["source"], "securityProtocol": "SASL_PLAINTEXT", "authSecretRef": {"name": "k"}}
    assert component_secrets(parse_spec({**BASE, "mode": "fused", "source": sasl}), INFERENCE) == [
        "k",
        "mongo",
        "mysql",
    ]
    assert component_secrets(parse_spec({**BASE, "source": sasl}), INFERENCE) == ["mongo", "mysql"]


def test_fused_mode_keeps_the_poller_of_an_http_source_and_the_autoscaler():
    spec_body = {
        **BASE,
        "mode": "fused",
        "source": HTTP_SOURCE,
        "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3},
    }
    assert sorted(_deployments(spec_body)) == [INFERENCE, "poller"]
    scaled = build_children(parse_spec(spec_body), OWNER, default_image="img", autoscaled=3)
    (inference,) = [c for c in scaled if c["metadata"]["name"] == "p-inference"]
    assert inference["spec"]["replicas"] == 3


TRACKING = {"uri": "https://mlflow.example:5000", "credentialsSecretRef": {"name": "mlflow"}}


def test_a_registry_model_reaches_the_inference_pods_with_its_server_credentials_and_a_cache(monkeypatch):
    from sentiment_workers.model.source import REGISTRY_CACHE_ENV, registry_cache_dir

    model = {"name": "models:/tweets@champion", "tracking": TRACKING, "cacheSizeLimit": "3Gi"}
    spec = parse_spec({**BASE, "model": model})
    deployments = _deployments({**BASE, "model": model})
    inference, consumer = deployments[INFERENCE], deployments[CONSUMER]
    container = _container_of(inference)
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}

    assert worker_settings(spec)["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000"
    assert worker_settings(spec)["SENTIMENT_MODEL_NAME"] == "models:/tweets@champion"
    # Each key is optional: a Secret with only a token (or only username and password) starts the pods.
    for variable, key in (
        ("MLFLOW_TRACKING_TOKEN", "token"),
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        assert env[variable] == {"secretKeyRef": {"name": "mlflow", "key": key, "optional": True}}
    assert env[REGISTRY_CACHE_ENV] == "/model-cache"
    assert {"name": "model-cache", "mountPath": "/model-cache"} in container["volumeMounts"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = inference["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "3Gi"}} in volumes
    monkeypatch.setenv(REGISTRY_CACHE_ENV, env[REGISTRY_CACHE_ENV])
    assert str(registry_cache_dir()) == "/model-cache", "the workers download into the mounted cache"

    # The consumer reads no model: none of it reaches its pods, nor rolls them.
    consumer_container = _container_of(consumer)
    assert not {e["name"] for e in consumer_container["env"]} & {"MLFLOW_TRACKING_TOKEN", REGISTRY_CACHE_ENV}
    assert config_hash(spec, CONSUMER) == config_hash(parse_spec(BASE), CONSUMER)
    assert component_secrets(spec, CONSUMER) == ["mongo"]
    assert component_secrets(spec, INFERENCE) == ["mlflow", "mongo", "mysql"]


def test_a_changed_tracking_secret_or_server_rolls_inference_only():
    spec = parse_spec({**BASE, "model": {"name": "models:/tweets/2", "tracking": TRACKING}})

    def annotations(component: str, **versions: str) -> dict:
        deployment = build_deployment(
            spec,
            OWNER,
            component,
            default_image="i",
            secret_versions={"mongo": "1", "mysql": "1", "mlflow": "1", **versions},
        )
        return deployment["spec"]["template"]["metadata"]["annotations"]

    for component, rolls in ((INFERENCE, True), (CONSUMER, False)):
        before, after = annotations(component), annotations(component, mlflow="2")
        assert (before[ANNOTATION_SECRETS_VERSION] != after[ANNOTATION_SECRETS_VERSION]) is rolls, component
    moved = parse_spec(
        {**BASE, "model": {"name": "models:/tweets/2", "tracking": {**TRACKING, "uri": "http://other:5000"}}}
    )
    assert config_hash(spec, INFERENCE) != config_hash(moved, INFERENCE)


def test_without_a_tracking_server_nothing_of_mlflow_is_rendered():
    deployments = _deployments(BASE)
    for component, deployment in deployments.items():
        container = _container_of(deployment)
        names = {e["name"] for e in container["env"]}
        assert not any(n.startswith("MLFLOW_") or n == "SENTIMENT_MODEL_CACHE_DIR" for n in names), component
        volumes = [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]]
        assert volumes == ["tmp", "cache"], component
    assert not any(k.startswith("MLFLOW_") for k in worker_settings(parse_spec(BASE)))


S3_LANDING = {
    "url": "s3://lake/raw/http",
    "endpointUrl": "http://minio.storage:9000",
    "region": "eu-west-1",
    "credentialsSecretRef": {"name": "lake"},
}
S3_SOURCE = {**HTTP_SOURCE, "http": {**HTTP_SOURCE["http"], "landing": S3_LANDING}}


def test_the_poller_s3_client_reads_its_endpoint_region_and_credentials_from_the_poller_env(monkeypatch):
    """The poller's container, its Secret values filled in as the kubelet does, read back by botocore (the
    client under s3fs): MinIO's endpoint, the region and the Secret's keys."""
    import botocore.session

    container = _container_of(_deployments({**BASE, "source": S3_SOURCE})["poller"])
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "lake", "key": "accessKeyId"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "lake", "key": "secretAccessKey"}}
    assert env["AWS_SESSION_TOKEN"] == {
        "secretKeyRef": {"name": "lake", "key": "sessionToken", "optional": True}
    }
    secret = {"accessKeyId": "AKIDLAKE", "secretAccessKey": "s3cr3t"}  # no sessionToken: optional
    for name, value in env.items():
        if name.startswith("AWS_"):
            ref = value["secretKeyRef"] if isinstance(value, dict) else None
            if ref is None:
                monkeypatch.setenv(name, value)
            elif ref["key"] in secret:
                monkeypatch.setenv(name, secret[ref["key"]])
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    s3 = session.create_client("s3")

    assert (credentials.access_key, credentials.secret_key) == ("AKIDLAKE", "s3cr3t")
    assert credentials.token is None
    assert s3.meta.region_name == "eu-west-1"
    assert s3.meta.endpoint_url == "http://minio.storage:9000"


def test_only_the_poller_gets_the_s3_settings_never_the_shared_config_map():
    """Every boto client in a pod reads the AWS variables (an MLflow artifact download from S3 in the
    inference pods would follow AWS_ENDPOINT_URL to MinIO): they are on the poller's container only."""
    spec = parse_spec({**BASE, "source": S3_SOURCE})
    deployments = _deployments({**BASE, "source": S3_SOURCE})

    assert not any(k.startswith("AWS_") for k in worker_settings(spec)), "not in the ConfigMap"
    for component in (CONSUMER, INFERENCE):
        names = {e["name"] for e in _container_of(deployments[component])["env"]}
        assert not any(n.startswith("AWS_") for n in names), component
    assert component_secrets(spec, "poller") == ["api-headers", "lake", "mongo"]
    assert component_secrets(spec, INFERENCE) == ["mongo", "mysql"]
    fused = parse_spec({**BASE, "mode": "fused", "source": S3_SOURCE})
    assert component_secrets(fused, INFERENCE) == ["mongo", "mysql"], "fused inference reads no landing"
    # Without the fields: none of the variables (the pod's identity, botocore's chain).
    bare = _container_of(_deployments({**BASE, "source": HTTP_SOURCE})["poller"])
    assert not any(e["name"].startswith("AWS_") for e in bare["env"])


def test_a_changed_landing_secret_or_endpoint_rolls_the_poller_only():
    spec = parse_spec({**BASE, "source": S3_SOURCE})
    versions = {"mongo": "1", "mysql": "1", "api-headers": "1", "lake": "1"}

    def secrets_version(component: str, **changed: str) -> str:
        deployment = build_deployment(
            spec, OWNER, component, default_image="i", secret_versions={**versions, **changed}
        )
        return str(deployment["spec"]["template"]["metadata"]["annotations"][ANNOTATION_SECRETS_VERSION])

    for component, rolls in (("poller", True), (CONSUMER, False), (INFERENCE, False)):
        assert (secrets_version(component) != secrets_version(component, lake="2")) is rolls, component
    moved = {**S3_LANDING, "endpointUrl": "https://s3.internal:9443"}
    after = parse_spec({**BASE, "source": {**S3_SOURCE, "http": {**S3_SOURCE["http"], "landing": moved}}})
    assert config_hash(spec, "poller") != config_hash(after, "poller")
    assert config_hash(spec, CONSUMER) == config_hash(after, CONSUMER)
    assert config_hash(spec, INFERENCE) == config_hash(after, INFERENCE)
