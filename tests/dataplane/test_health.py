"""A worker's /healthz: 200 only while its event loop beats; "starting" before the first beat, "stalled"
when a blocking call wedges the loop; /metrics served on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sentiment_workers.config import STORE_FAULT_KINDS
from sentiment_workers.health import Heartbeat, readiness, serve
from sentiment_workers.metrics import PipelineMetrics

from tests.dataplane.conftest import ROOT, free_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_heartbeat_is_starting_then_ok_then_stalled():
    now = [100.0]
    heartbeat = Heartbeat(timeout_s=60, clock=lambda: now[0])
    assert heartbeat.check() == (False, "starting: the event loop has not beaten yet")
    heartbeat.beat()
    now[0] += 59
    assert heartbeat.check()[0] is True
    now[0] += 2
    alive, reason = heartbeat.check()
    assert not alive and reason == "stalled: last event-loop beat 61 s ago (limit 60 s)"


def test_healthz_follows_the_event_loop_and_metrics_share_the_port():
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.messages_staged.inc(3)
    heartbeat = Heartbeat(timeout_s=0.5)
    port = free_port()
    server = serve(port, metrics.registry, heartbeat, addr="127.0.0.1")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=loop.run_until_complete, args=(heartbeat.run(stop, interval=0.1),))
    try:
        status, body = _get(port, "/healthz")
        assert (status, body.strip()) == (503, "starting: the event loop has not beaten yet")

        runner.start()
        _wait_for_status(port, 200)

        # A blocking call on the loop (what a wedged worker looks like): the beats stop, /healthz fails.
        loop.call_soon_threadsafe(time.sleep, 1.5)
        _wait_for_status(port, 503)
        assert _get(port, "/healthz")[1].startswith("stalled: last event-loop beat")
        _wait_for_status(port, 200)  # the call returned: the loop beats again

        status, body = _get(port, "/metrics")
        assert status == 200 and "sentiment_messages_staged_total 3.0" in body
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(5)
        loop.close()
        server.shutdown()


def _wait_for_status(port: int, expected: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (status := _get(port, "/healthz")[0]) != expected:
        assert time.monotonic() < deadline, f"/healthz stayed {status}, expected {expected}"
        time.sleep(0.05)


# -- readiness: "data can flow" -------------------------------------------------------------------------


def test_readiness_waits_for_a_first_contact_and_names_every_unreachable_store():
    metrics = PipelineMetrics(CollectorRegistry())
    heartbeat = Heartbeat(timeout_s=60)
    heartbeat.beat()
    assert readiness(metrics.registry, heartbeat) == (False, "starting: no store reached yet")
    metrics.store_up.labels("mongo").set(1)
    metrics.store_up.labels("mysql").set(0)
    metrics.store_up.labels("kafka").set(0)
    assert readiness(metrics.registry, heartbeat) == (False, "unreachable: kafka, mysql")
    metrics.store_up.labels("kafka").set(1)
    metrics.store_up.labels("mysql").set(1)
    assert readiness(metrics.registry, heartbeat) == (True, "ok: kafka, mongo, mysql reachable")
    # A wedged loop is never ready, whatever the stores say.
    assert readiness(metrics.registry, Heartbeat(timeout_s=60))[1].startswith("starting: the event loop")


def test_readiness_says_first_which_store_refused_the_credentials_in_its_words():
    metrics = PipelineMetrics(CollectorRegistry())
    heartbeat = Heartbeat(timeout_s=60)
    heartbeat.beat()
    metrics.store_reached("mongo")
    metrics.store_failed("kafka", "unreachable", "Kafka unreachable (KafkaConnectionError: no broker)")
    metrics.store_failed("mysql", "auth", "MySQL refused the credentials (access denied for user 'app')")
    assert readiness(metrics.registry, heartbeat, metrics.store_faults) == (
        False,
        "credentials refused: MySQL refused the credentials (access denied for user 'app'); "
        "unreachable: kafka",
    )
    metrics.store_reached("mysql")
    metrics.store_reached("kafka")
    assert readiness(metrics.registry, heartbeat, metrics.store_faults) == (
        True,
        "ok: kafka, mongo, mysql reachable",
    )


async def test_a_user_who_may_read_but_not_write_stays_unready_though_the_probe_answers(services, config):
    """SELECT 1 works for a SELECT-only MariaDB user, the worker's writes do not (1142 command denied): the
    probe's answer must not turn the worker ready while its real calls are refused."""
    from sentiment_workers.adapters import mysql
    from sentiment_workers.adapters.mysql import Warehouse
    from sentiment_workers.reachability import StoreProbe, probe_once
    from sentiment_workers.retry import with_retries

    metrics = PipelineMetrics(CollectorRegistry())
    heartbeat = Heartbeat(timeout_s=60)
    heartbeat.beat()
    reader = await Warehouse.connect(
        config.model_copy(
            update={
                "mysql_user": services.env["BI_MYSQL_USER"],
                "mysql_password": SecretStr(services.env["BI_MYSQL_PASSWORD"]),
            }
        ),
        maxsize=1,
    )
    schema = asyncio.create_task(
        with_retries(
            reader.ensure_schema,
            store="mysql",
            is_transient=mysql.is_transient,
            is_auth_error=mysql.is_auth_error,
            metrics=metrics,
            auth_max_wait=0.2,
        )
    )
    try:
        while metrics.store_fault("mysql") != "auth":
            assert not schema.done(), schema
            await asyncio.sleep(0.05)
        assert await probe_once(
            "mysql", StoreProbe(reader.ping, mysql.is_auth_error), metrics, probe_timeout=5
        )
        ready, reason = readiness(metrics.registry, heartbeat, metrics.store_faults)
        assert not schema.done(), "refused rights are retried, not raised"
    finally:
        schema.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await schema
        await reader.close()
    assert not ready and reason.startswith("credentials refused: MySQL refused the credentials ("), reason
    assert "1142" in reason and "command denied" in reason


def test_a_store_fault_is_one_kind_of_the_one_table_the_operator_reads():
    """``STORE_FAULT_KINDS`` is the table of ``sentiment_store_error``'s ``kind`` (the HTTP source's
    ``rejected`` included): every kind is exported for a store, 1 only for its current fault; a kind outside
    the table is a programming error, not a new series the operator would not read."""
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.store_failed("http", "rejected", "the API rejected the request: HTTP 404")

    def kinds(store: str) -> dict[str, float | None]:
        return {
            kind: metrics.registry.get_sample_value("sentiment_store_error", {"store": store, "kind": kind})
            for kind in STORE_FAULT_KINDS
        }

    assert STORE_FAULT_KINDS == ("unreachable", "auth", "rejected")
    assert metrics.store_fault("http") == "rejected"
    assert kinds("http") == {"unreachable": 0, "auth": 0, "rejected": 1}
    metrics.store_failed("http", "auth", "the API refused the credentials: HTTP 401")
    assert kinds("http") == {"unreachable": 0, "auth": 1, "rejected": 0}
    metrics.store_reached("http")
    assert metrics.store_fault("http") is None
    assert kinds("http") == {"unreachable": 0, "auth": 0, "rejected": 0}
    with pytest.raises(ValueError, match="unknown store fault kind 'timeout'"):
        metrics.store_failed("mongo", "timeout", "MongoDB timed out")
    assert metrics.store_fault("mongo") is None


def test_a_probe_does_not_clear_rights_a_real_call_was_refused_until_a_call_succeeds():
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.store_failed("mysql", "auth", "MySQL refused the credentials (1142)")
    metrics.store_reached("mysql", probe=True)
    metrics.store_failed("mysql", "unreachable", "MySQL unreachable (probe timeout)", probe=True)
    assert metrics.store_fault("mysql") == "auth"
    metrics.store_reached("mysql")
    assert metrics.store_fault("mysql") is None
    metrics.store_reached("mysql", probe=True)
    assert metrics.registry.get_sample_value("sentiment_store_up", {"store": "mysql"}) == 1


class TcpProxy:
    """A TCP port that refuses connections until :meth:`open`, then forwards them to ``target``: a store that
    is unreachable, then there, at one address (the shared test servers keep running meanwhile)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError), source, sink:
            while data := source.recv(65536):
                sink.sendall(data)


def _gauge(port: int, store: str, name: str = "sentiment_store_up", **labels: str) -> float | None:
    status, body = _get(port, "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == {"store": store, **labels}:
                return sample.value
    return None


def _wait_for_readyz(port: int, expected: int, says: str, timeout: float = 60) -> str:
    """Until /readyz answers ``expected`` with a reason containing ``says``; returns the reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = _get(port, "/readyz")
        except urllib.error.URLError as exc:  # the process has not opened its port yet
            status, body = 0, str(exc)
        if status == expected and says in body:
            return body.strip()
        assert time.monotonic() < deadline, f"/readyz stayed {status} {body.strip()!r}, expected {expected}"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("command", "store"),
    [("consume", "kafka"), ("infer", "mysql")],
)
def test_a_worker_is_unready_naming_the_store_it_cannot_reach_then_ready_once_it_is_there(
    services, config, tiny_model_dir, command, store
):
    """Ready meant "event loop alive": workers that could not reach their stores answered ready, so the
    pipeline said Ready. A real worker process, its store behind an address that refuses connections, then
    forwards them: /readyz 503 naming the store and its gauge 0, then 200 and 1, without a restart."""
    if store == "kafka":
        host, _, port = config.kafka_bootstrap_servers.partition(",")[0].rpartition(":")
        proxy = TcpProxy((host, int(port)))
        pointed = config.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{proxy.port}"})
    else:
        proxy = TcpProxy((config.mysql_host, config.mysql_port))
        pointed = config.model_copy(update={"mysql_host": "127.0.0.1", "mysql_port": proxy.port})
    metrics_port = free_port()
    env = services.worker_env(pointed) | {
        "SENTIMENT_METRICS_PORT": str(metrics_port),
        "SENTIMENT_MODEL_NAME": str(tiny_model_dir),
        "SENTIMENT_MODEL_BACKEND": "torch",
        "SENTIMENT_STORE_PROBE_INTERVAL_SECONDS": "0.5",
        "SENTIMENT_STORE_PROBE_TIMEOUT_SECONDS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from sentiment_workers.cli import main; main()", command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_readyz(metrics_port, 503, f"unreachable: {store}")
        assert _gauge(metrics_port, store) == 0
        assert process.poll() is None, "the worker waits for its store, it does not exit"
        proxy.open()
        _wait_for_readyz(metrics_port, 200, f"{store}")
        assert _gauge(metrics_port, store) == 1
    finally:
        proxy.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _create_mysql_user(services, user: str, password: str) -> None:
    """As MariaDB's root (socket authentication): a user with every right on the test database."""
    database = services.env["SENTIMENT_MYSQL_DATABASE"]
    statements = "".join(
        f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'; "
        f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'; "
        for host in ("127.0.0.1", "localhost")
    )
    subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            f"--socket={services.env['MYSQL_ROOT_SOCKET']}",
            "-uroot",
            "-e",
            statements,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("command", "store", "says", "error"),
    [
        ("consume", "mongo", "MongoDB refused the credentials", "authentication failed"),
        ("infer", "mysql", "MySQL refused the credentials", "Access denied for user"),
    ],
)
def test_a_worker_whose_credentials_are_refused_keeps_running_says_so_and_recovers_once_they_work(
    services, config, auth_mongo, tiny_model_dir, command, store, says, error
):
    """A wrong password made the worker exit and crash-loop (the status said RollingOut). A real worker
    process whose store refuses its credentials (MongoDB 18 AuthenticationFailed from a SecantusDB run with
    --auth; MariaDB 1045 access denied) keeps running, answers /readyz 503 in the store's words, exports
    sentiment_store_up 0 and sentiment_store_error{kind="auth"} 1; once the credentials work (here: the
    user they name is created) it is ready again by itself."""
    user, password = f"late_{uuid.uuid4().hex[:8]}", "late-password"
    if store == "mongo":
        pointed = config.model_copy(update={"mongo_uri": SecretStr(auth_mongo.uri(user, password))})
    else:
        pointed = config.model_copy(update={"mysql_user": user, "mysql_password": SecretStr(password)})
    metrics_port = free_port()
    env = services.worker_env(pointed) | {
        "SENTIMENT_METRICS_PORT": str(metrics_port),
        "SENTIMENT_MODEL_NAME": str(tiny_model_dir),
        "SENTIMENT_MODEL_BACKEND": "torch",
        "SENTIMENT_STORE_PROBE_INTERVAL_SECONDS": "0.5",
        "SENTIMENT_STORE_PROBE_TIMEOUT_SECONDS": "5",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from sentiment_workers.cli import main; main()", command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reason = _wait_for_readyz(metrics_port, 503, says)
        assert reason.startswith(f"credentials refused: {says} (") and error in reason, reason
        assert _gauge(metrics_port, store) == 0
        assert _gauge(metrics_port, store, "sentiment_store_error", kind="auth") == 1
        assert _gauge(metrics_port, store, "sentiment_store_error", kind="unreachable") == 0
        time.sleep(3)  # several refused attempts later (probes every 0.5 s, start-up retries): still running
        assert process.poll() is None, "the worker waits for working credentials, it does not exit"

        if store == "mongo":
            auth_mongo.create_user(user, password)
        else:
            _create_mysql_user(services, user, password)
        _wait_for_readyz(metrics_port, 200, "ok:")
        assert _gauge(metrics_port, store) == 1
        assert _gauge(metrics_port, store, "sentiment_store_error", kind="auth") == 0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert "Traceback" not in stderr, stderr[-2000:]


async def test_refused_credentials_back_off_from_one_second_however_long_the_store_was_down_before():
    """A store down for a long time (many fast retries) that then refuses the credentials (a server still
    initialising its users, a Secret fixed a moment late) waits 1 s, 2 s, 4 s... from the first refusal, not
    the 60 s cap at once; an outage after refusals starts fast again (waits read from the retry log)."""
    from sentiment_workers.retry import with_retries
    from structlog.testing import capture_logs

    class Refused(Exception):
        pass

    failures = [ConnectionError("down")] * 12 + [Refused("denied")] * 3 + [ConnectionError("down again")]

    async def operation() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    real_sleep = asyncio.sleep
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:  # the waits are what is checked, not the clock
        slept.append(seconds)
        await real_sleep(0)

    with capture_logs() as logs, pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", no_sleep)
        result = await with_retries(
            operation,
            store="mysql",
            is_transient=lambda exc: isinstance(exc, ConnectionError),
            is_auth_error=lambda exc: isinstance(exc, Refused),
        )
    assert result == "written"
    waits = [entry["wait_s"] for entry in logs if entry["log_level"] == "warning"]
    assert len(waits) == 16 and slept == pytest.approx(waits, abs=0.01)
    assert max(waits[:12]) <= 5.1  # fast retries while unreachable, capped at 5 s
    refusals = waits[12:15]
    assert [int(w) for w in refusals] == [1, 2, 4]  # 1 s doubling, plus up to 1 s of jitter
    assert waits[15] <= 5.1  # unreachable again: the fast backoff, not the refusals' streak
