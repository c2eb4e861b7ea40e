"""Metabase provisioning (``sentiment_workers.bi``) against a FAITHFUL FAKE of Metabase's documented API.

Metabase cannot run on these machines (no jar, no Docker), so ``tests/deploy/metabase_fake.py`` serves
the endpoints the provisioner uses over real HTTP on loopback, with Metabase's request/response shapes and
validation. Like Metabase, the fake tests database connections and runs saved questions against the real
MySQL server behind it: here MariaDB, where the chart's own init script created the application user and
the read-only BI user. So these tests check, for real, that the dashboard's questions work through the
read-only account, and that re-running the provisioner duplicates nothing.

Every provisioner test runs against the fake as two Metabase versions behave (metabase_fake.VERSIONS): the
v0.52 line (queries in the legacy shape) and the current LTS line v0.58, the chart's default image
(queries as MBQL 5, tabs rebuilt from the request). The last tests pin down the fake's own strictness
where it differs from a lenient stand-in (each rule is cited from Metabase's source in metabase_fake.py)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sentiment_workers.adapters.mysql import create_table_sql
from sentiment_workers.bi.metabase import (
    MetabaseClient,
    MetabaseError,
    MetabaseNotReady,
    major_version,
    native_dataset_query,
    native_query_of,
)
from sentiment_workers.bi.provisioning import ProvisionResult, provision
from sentiment_workers.bi.questions import dashboard_questions
from sentiment_workers.bi.settings import MetabaseSettings

from tests.deploy.conftest import REPO, MariaDB, Render
from tests.deploy.metabase_fake import (
    CURRENT,
    TAB_ERROR,
    V0_52,
    VERSIONS,
    FakeMetabase,
    MetabaseVersion,
    native_parts,
)

ADMIN_PASSWORD = "Adm1n-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def warehouse(mariadb: MariaDB, render: Render) -> dict[str, str]:
    """A database with the fact table and a few rows, plus the chart's app and read-only BI users."""
    database = f"mb_{uuid.uuid4().hex[:8]}"
    users = {
        "app_user": f"app_{uuid.uuid4().hex[:6]}",
        "app_password": "app'pw\\" + uuid.uuid4().hex[:8],  # quotes and backslashes must survive
        "bi_user": f"bi_{uuid.uuid4().hex[:6]}",
        "bi_password": "bi'pw" + uuid.uuid4().hex[:8],
    }
    configmap = next(
        d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-mysql")
    )
    with mariadb.root() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
    run_chart_mysql_init(configmap["data"]["10-users.sh"], mariadb, database, users)
    with mariadb.connect(users["app_user"], users["app_password"], database) as conn, conn.cursor() as cur:
        cur.execute(create_table_sql("dw_messages"))
        rows = [
            ("m1", "u1", "great", datetime(2025, 1, 1, 9), "positive", 0.9),
            ("m2", "u2", "fine", datetime(2025, 1, 1, 10), "neutral", 0.6),
            ("m3", "u1", "awful", datetime(2025, 1, 2, 11), "negative", 0.8),
            ("m4", "u3", "love it", datetime(2025, 1, 2, 12), "positive", 0.95),
        ]
        cur.executemany(
            "INSERT INTO dw_messages (id, user_id, comment, ingest_ts, sentiment_label, sentiment_score, "
            "raw_json, model, processed_at) VALUES (%s, %s, %s, %s, %s, %s, NULL, 'test', NOW(6))",
            rows,
        )
    return {"database": database, **users}


def run_chart_mysql_init(script: str, mariadb: MariaDB, database: str, users: dict[str, str]) -> None:
    """Source the chart's init script as the mysql image's entrypoint does, with its docker_process_sql
    helper pointing at MariaDB's root socket."""
    shim = (
        "docker_process_sql() { mariadb --no-defaults --protocol=socket -uroot "
        f'--socket="{mariadb.root_socket}" "$@"; }}\n'
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shim + script],
        env={
            **os.environ,
            "MYSQL_DATABASE": database,
            "APP_USERNAME": users["app_user"],
            "APP_PASSWORD": users["app_password"],
            "BI_USERNAME": users["bi_user"],
            "BI_PASSWORD": users["bi_password"],
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_chart_init_script_makes_the_bi_user_read_only(mariadb: MariaDB, warehouse: dict[str, str]) -> None:
    db = warehouse["database"]
    with mariadb.connect(warehouse["bi_user"], warehouse["bi_password"], db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM dw_messages")
        assert cur.fetchone() == (4,)
        for statement in (
            "INSERT INTO dw_messages (id, comment, ingest_ts, sentiment_label, sentiment_score, model, "
            "processed_at) VALUES ('x', 'x', NOW(), 'positive', 0.5, 'm', NOW())",
            "UPDATE dw_messages SET sentiment_label = 'negative'",
            "DELETE FROM dw_messages",
            "CREATE TABLE evil (id INT)",
            "DROP TABLE dw_messages",
        ):
            with pytest.raises(pymysql.err.OperationalError) as denied:
                cur.execute(statement)
            assert denied.value.args[0] in {1142, 1044}, statement  # command denied / access denied
    with mariadb.root() as conn, conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR %s@'%%'", (warehouse["bi_user"],))
        grants = " ".join(row[0] for row in cur.fetchall())
    assert f"GRANT SELECT ON `{db}`.*" in grants
    assert "ALL PRIVILEGES" not in grants


def versioned(version: MetabaseVersion) -> str:
    return version.tag


@pytest.fixture(params=VERSIONS, ids=versioned)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeMetabase]:
    """The fake as the pinned-before (v0.52) and the current LTS (v0.58, the chart default) behave."""
    with FakeMetabase(version=request.param) as server:
        yield server


@pytest.fixture
def current_fake() -> Iterator[FakeMetabase]:
    with FakeMetabase(version=CURRENT) as server:
        yield server


def settings_for(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str], **over: Any
) -> MetabaseSettings:
    values: dict[str, Any] = {
        "url": fake.url,
        "wait_timeout_seconds": 30,
        "admin_email": "admin@sentiment.test",
        "admin_password": ADMIN_PASSWORD,
        "warehouse_host": "127.0.0.1",
        "warehouse_port": mariadb.port,
        "warehouse_database": warehouse["database"],
        "warehouse_user": warehouse["bi_user"],
        "warehouse_password": warehouse["bi_password"],
        **over,
    }
    return MetabaseSettings(**values)


def run(settings: MetabaseSettings) -> ProvisionResult:
    """One provisioner run, as one Job run: a new client, so a new session."""
    with MetabaseClient(settings.url) as client:
        return provision(client, settings)


def sql_of(card: dict[str, Any]) -> str:
    parts = native_parts(card["dataset_query"])
    assert parts is not None
    return parts[1]


def set_sql(card: dict[str, Any], sql: str) -> None:
    """Edit a stored card's SQL in place, in whichever shape the server keeps it."""
    query = card["dataset_query"]
    if "stages" in query:
        query["stages"][0]["native"] = sql
    else:
        query["native"]["query"] = sql


def dashboard_named(fake: FakeMetabase, name: str) -> dict[str, Any]:
    found = [d for d in fake.state.dashboards.values() if d["name"] == name]
    assert len(found) == 1, f"{len(found)} dashboards named {name!r}"
    return found[0]


def placed(fake: FakeMetabase, dashboard_id: int) -> dict[int, dict[str, Any]]:
    """card id -> dashcard, for the dashcards on a dashboard."""
    return {d["card_id"]: d for d in fake.state.dashcards.values() if d["dashboard_id"] == dashboard_id}


def tab_names(fake: FakeMetabase, dashboard_id: int) -> dict[int, str]:
    return {t["id"]: t["name"] for t in fake.state.tabs.values() if t["dashboard_id"] == dashboard_id}


def card_body(database_id: int, name: str = "Mine", **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "display": "table",
        "visualization_settings": {},
        "dataset_query": {"type": "native", "database": database_id, "native": {"query": "SELECT 1"}},
        **over,
    }


def add_tabs_and_own_card(client: MetabaseClient, dashboard_id: int, database_id: int) -> int:
    """What a user does in the UI: splits the dashboard into two tabs and puts their own card on the
    second. The UI sends the tabs with the dashcards (new tabs with negative ids)."""
    own = client.create_card(card_body(database_id))
    view = client.get_dashboard(dashboard_id)
    dashcards = [{**d, "dashboard_tab_id": -1} for d in view["dashcards"]]
    dashcards.append(
        {"id": -1, "card_id": own["id"], "row": 0, "col": 0, "size_x": 4, "size_y": 4, "dashboard_tab_id": -2}
    )
    client.update_dashboard(
        dashboard_id,
        {"tabs": [{"id": -1, "name": "Overview"}, {"id": -2, "name": "Mine"}], "dashcards": dashcards},
    )
    return int(own["id"])


SPECIFIED = {"Total messages": "scalar", "Messages by sentiment": "bar", "Messages per day": "line"}


# ---------------------------------------------------------------------------------------------- provisioner
def test_provisioning_creates_the_specified_dashboard_through_the_read_only_user(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    result = run(settings_for(fake, mariadb, warehouse))

    state = fake.state
    assert set(state.users) == {"admin@sentiment.test"}
    ours = [d for d in state.databases.values() if not d["is_sample"]]
    assert len(ours) == 1
    details = ours[0]["details"]
    assert ours[0]["engine"] == "mysql" and ours[0]["id"] == result.database_id
    assert (details["user"], details["password"]) == (warehouse["bi_user"], warehouse["bi_password"])
    assert details["dbname"] == warehouse["database"] and details["port"] == mariadb.port
    assert "allowPublicKeyRetrieval=true" in details["additional-options"]
    assert {t["name"] for t in state.tables.values() if t["db_id"] == result.database_id} == {"dw_messages"}

    assert {c["name"]: c["display"] for c in state.cards.values()} == SPECIFIED
    by_name = {c["name"]: c for c in state.cards.values()}
    assert by_name["Messages by sentiment"]["visualization_settings"] == {
        "graph.dimensions": ["sentiment_label"],
        "graph.metrics": ["messages"],
    }
    assert "SELECT DATE(ingest_ts) AS day" in sql_of(by_name["Messages per day"])
    assert by_name["Messages per day"]["visualization_settings"]["graph.dimensions"] == ["day"]
    # Stored in the server's own shape: MBQL 5 from v0.57 on, legacy before.
    assert ("stages" in by_name["Total messages"]["dataset_query"]) is fake.version.mbql5

    assert [d["name"] for d in state.dashboards.values()] == ["Sentiment_Streaming_Kafka_Mongo_DL_MySQL"]
    assert result.dashboard_id == dashboard_named(fake, "Sentiment_Streaming_Kafka_Mongo_DL_MySQL")["id"]
    assert set(placed(fake, result.dashboard_id)) == set(result.card_ids.values())


def test_questions_answer_with_the_warehouse_numbers(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    with MetabaseClient(settings.url) as client:
        result = provision(client, settings)
        answers = {
            name: client._request("POST", f"/api/card/{card_id}/query")["data"]["rows"]
            for name, card_id in result.card_ids.items()
        }
    with mariadb.root(warehouse["database"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM dw_messages")
        total = cur.fetchone()[0]
        cur.execute("SELECT sentiment_label, COUNT(*) FROM dw_messages GROUP BY sentiment_label")
        by_label = dict(cur.fetchall())
        cur.execute("SELECT DATE(ingest_ts), COUNT(*) FROM dw_messages GROUP BY DATE(ingest_ts)")
        per_day = {str(day): n for day, n in cur.fetchall()}
    assert answers["Total messages"] == [[total]]
    assert dict(map(tuple, answers["Messages by sentiment"])) == by_label
    assert {str(day): n for day, n in answers["Messages per day"]} == per_day


def test_a_rerun_changes_nothing(fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    first = run(settings)
    state = fake.state
    before = {
        "requests": Counter(state.requests),
        "revisions": list(state.revisions),
        "connection_tests": state.connection_tests,
        "databases": copy.deepcopy(state.databases),
        "dashcards": copy.deepcopy(state.dashcards),
    }
    second = run(settings)  # a new process: logs in instead of setting up

    assert first.changed and not second.changed
    assert (second.database_id, second.dashboard_id, second.card_ids) == (
        first.database_id,
        first.dashboard_id,
        first.card_ids,
    )
    made = state.requests - before["requests"]
    assert made[("POST", r"/api/card")] == made[("PUT", r"/api/card/(\d+)")] == 0
    assert made[("POST", r"/api/dashboard")] == made[("PUT", r"/api/dashboard/(\d+)")] == 0
    assert made[("POST", r"/api/setup")] == made[("POST", r"/api/database")] == 0
    # The connection details are re-sent (the BI password may have been rotated in its Secret; Metabase never
    # returns it), which Metabase treats as no change: no connection test, same stored details.
    assert made[("PUT", r"/api/database/(\d+)")] == 1
    assert state.connection_tests == before["connection_tests"]
    assert state.databases == before["databases"]
    assert state.revisions == before["revisions"]
    assert state.dashcards == before["dashcards"]
    assert len(state.users) == 1
    assert len(state.cards) == len(dashboard_questions()) and len(state.dashboards) == 1


def test_an_instance_provisioned_by_the_previous_release_converges_once(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    # The previous release named the dashboard "Sentiment overview" and drew a pie.
    run(
        settings_for(
            fake, mariadb, warehouse, dashboard_name="Sentiment overview", by_sentiment_display="pie"
        )
    )
    by_sentiment = next(c for c in fake.state.cards.values() if c["name"] == "Messages by sentiment")
    assert by_sentiment["display"] == "pie"

    upgraded = run(settings_for(fake, mariadb, warehouse))
    assert upgraded.updated == [
        "card:Messages by sentiment",
        "dashboard:Sentiment_Streaming_Kafka_Mongo_DL_MySQL:dashcards",  # the new dashboard filled
    ]
    assert upgraded.created == ["dashboard:Sentiment_Streaming_Kafka_Mongo_DL_MySQL"]
    assert {c["name"]: c["display"] for c in fake.state.cards.values()} == SPECIFIED
    spec = dashboard_named(fake, "Sentiment_Streaming_Kafka_Mongo_DL_MySQL")
    assert set(placed(fake, spec["id"])) == set(upgraded.card_ids.values())

    revisions = len(fake.state.revisions)
    again = run(settings_for(fake, mariadb, warehouse))
    assert not again.changed and len(fake.state.revisions) == revisions
    assert fake.state.revisions_of("card", by_sentiment["id"]) == 2  # created, then pie -> bar once


def test_upgrading_metabase_from_v0_52_to_the_lts_changes_nothing(
    mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    """The chart's default image moves from v0.52 to v0.58: the same application database, now returning
    MBQL 5, must not look like drift (the previous provisioner rewrote every question on every run)."""
    with FakeMetabase(version=V0_52) as server:
        settings = settings_for(server, mariadb, warehouse)
        run(settings)
        server.upgrade(CURRENT)
        revisions = list(server.state.revisions)
        puts = server.state.requests[("PUT", r"/api/card/(\d+)")]

        assert not run(settings).changed

        assert server.state.requests[("PUT", r"/api/card/(\d+)")] == puts
        assert server.state.revisions == revisions
        assert all("stages" in c["dataset_query"] for c in server.state.cards.values())


def test_a_rerun_repairs_drift_and_keeps_hand_added_tabs_and_dashcards(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    first = run(settings)
    total_id = first.card_ids["Total messages"]
    provisioned = placed(fake, first.dashboard_id)[total_id]["id"]
    with MetabaseClient(settings.url) as client:
        client.login("admin@sentiment.test", ADMIN_PASSWORD)
        own_id = add_tabs_and_own_card(client, first.dashboard_id, first.database_id)
        tabs = tab_names(fake, first.dashboard_id)
        mine = next(i for i, name in tabs.items() if name == "Mine")
        # ... and puts a second copy of "Total messages" on their tab.
        view = client.get_dashboard(first.dashboard_id)
        copy_of_total = {"id": -1, "card_id": total_id, "row": 4, "col": 0, "size_x": 6, "size_y": 4}
        client.update_dashboard(
            first.dashboard_id,
            {
                "tabs": view["tabs"],
                "dashcards": [*view["dashcards"], {**copy_of_total, "dashboard_tab_id": mine}],
            },
        )
    assert sorted(tabs.values()) == ["Mine", "Overview"]
    copies = {i for i, d in fake.state.dashcards.items() if d["card_id"] == total_id} - {provisioned}
    # Someone edits a question's SQL and moves the provisioned card.
    set_sql(fake.state.cards[total_id], "SELECT 42")
    fake.state.dashcards[provisioned]["row"] = 30

    second = run(settings)

    assert second.updated == [
        "card:Total messages",
        "dashboard:Sentiment_Streaming_Kafka_Mongo_DL_MySQL:dashcards",
    ]
    assert "COUNT(*)" in sql_of(fake.state.cards[total_id])
    assert tab_names(fake, first.dashboard_id) == tabs  # same tabs, same ids
    assert fake.state.dashcards[provisioned]["row"] == 0
    assert tabs[fake.state.dashcards[provisioned]["dashboard_tab_id"]] == "Overview"
    cards = placed(fake, first.dashboard_id)
    assert tabs[cards[own_id]["dashboard_tab_id"]] == "Mine"  # the hand-placed card stays on its tab
    assert len(copies) == 1 and {fake.state.dashcards[c]["dashboard_tab_id"] for c in copies} == {mine}
    assert {tabs[cards[c]["dashboard_tab_id"]] for c in second.card_ids.values() if c != total_id} == {
        "Overview"
    }
    assert not run(settings).changed


def test_questions_missing_from_a_dashboard_with_tabs_go_on_its_first_tab(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    first = run(settings)
    with MetabaseClient(settings.url) as client:
        client.login("admin@sentiment.test", ADMIN_PASSWORD)
        own_id = add_tabs_and_own_card(client, first.dashboard_id, first.database_id)
        # Someone removes the provisioned questions from the dashboard, keeping their own card.
        view = client.get_dashboard(first.dashboard_id)
        client.update_dashboard(
            first.dashboard_id,
            {"tabs": view["tabs"], "dashcards": [d for d in view["dashcards"] if d["card_id"] == own_id]},
        )
    tabs = tab_names(fake, first.dashboard_id)

    second = run(settings)

    assert second.updated == ["dashboard:Sentiment_Streaming_Kafka_Mongo_DL_MySQL:dashcards"]
    assert tab_names(fake, first.dashboard_id) == tabs
    cards = placed(fake, first.dashboard_id)
    assert set(cards) == {own_id, *second.card_ids.values()}
    first_tab = min(fake.state.tabs.values(), key=lambda t: t["position"])
    assert {cards[c]["dashboard_tab_id"] for c in second.card_ids.values()} == {first_tab["id"]}
    assert tabs[cards[own_id]["dashboard_tab_id"]] == "Mine"


def test_the_chart_displays_are_configurable(
    current_fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    run(settings_for(current_fake, mariadb, warehouse, by_sentiment_display="pie", per_day_display="area"))
    cards = {c["name"]: c for c in current_fake.state.cards.values()}
    assert cards["Messages by sentiment"]["display"] == "pie"
    assert cards["Messages by sentiment"]["visualization_settings"] == {
        "pie.dimension": "sentiment_label",
        "pie.metric": "messages",
    }
    assert cards["Messages per day"]["display"] == "area"


def test_a_weak_admin_password_is_refused_with_metabase_message(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse, admin_password="password")
    with MetabaseClient(settings.url) as client, pytest.raises(MetabaseError) as refused:
        provision(client, settings)
    assert refused.value.status == 400
    assert "password" in refused.value.detail
    assert fake.state.users == {}


def test_wrong_warehouse_credentials_fail_before_anything_is_saved(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse, warehouse_password="wrong-password")
    with MetabaseClient(settings.url) as client, pytest.raises(MetabaseError) as refused:
        provision(client, settings)
    assert refused.value.status == 400 and "Access denied" in refused.value.detail
    assert [d for d in fake.state.databases.values() if not d["is_sample"]] == []
    assert fake.state.cards == {}


def test_provisioning_waits_for_metabase_to_start(mariadb: MariaDB, warehouse: dict[str, str]) -> None:
    with FakeMetabase(health_checks_before_ready=1) as starting:
        result = run(settings_for(starting, mariadb, warehouse))
        assert starting.state.requests[("GET", r"/api/health")] == 2
        assert result.created


def test_waiting_for_metabase_gives_up_with_a_clear_error() -> None:
    with (
        FakeMetabase(health_checks_before_ready=10_000) as slow,
        MetabaseClient(slow.url) as client,
        pytest.raises(MetabaseNotReady),
    ):
        client.wait_until_healthy(timeout=1.0, interval=0.2)


def test_cli_provisions_from_environment_and_files_only(
    tmp_path: Path, current_fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    admin_file = tmp_path / "admin-password"
    admin_file.write_text(ADMIN_PASSWORD + "\n")
    env = {
        **os.environ,
        "SENTIMENT_METABASE_ADMIN_EMAIL": "admin@sentiment.test",
        "SENTIMENT_METABASE_ADMIN_PASSWORD_FILE": str(admin_file),
        "SENTIMENT_METABASE_WAREHOUSE_HOST": "127.0.0.1",
        "SENTIMENT_METABASE_WAREHOUSE_PORT": str(mariadb.port),
        "SENTIMENT_METABASE_WAREHOUSE_DATABASE": warehouse["database"],
        "SENTIMENT_METABASE_WAREHOUSE_USER": warehouse["bi_user"],
        "SENTIMENT_METABASE_WAREHOUSE_PASSWORD": warehouse["bi_password"],
        "SENTIMENT_METABASE_DASHBOARD_NAME": "From the CLI",
        "SENTIMENT_METABASE_BY_SENTIMENT_DISPLAY": "row",
    }
    cli = [
        str(REPO / ".venv" / "bin" / "sentiment-pipeline"),
        "metabase",
        "provision",
        "--url",
        current_fake.url,
        "--json",
    ]
    for _ in range(2):
        result = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert ADMIN_PASSWORD not in result.stdout + result.stderr
        assert warehouse["bi_password"] not in result.stdout + result.stderr
    assert json.loads(result.stdout)["updated"] == []
    assert [d["name"] for d in current_fake.state.dashboards.values()] == ["From the CLI"]
    assert {c["name"]: c["display"] for c in current_fake.state.cards.values()}[
        "Messages by sentiment"
    ] == "row"
    assert current_fake.state.users["admin@sentiment.test"]["password"] == ADMIN_PASSWORD


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("SENTIMENT_METABASE_ADMIN_PASSWORD", None, "SENTIMENT_METABASE_ADMIN_PASSWORD"),
        ("SENTIMENT_METABASE_BY_SENTIMENT_DISPLAY", "donut", "by_sentiment_display"),
    ],
)
def test_cli_rejects_bad_settings_with_a_clear_error(
    current_fake: FakeMetabase, variable: str, value: str | None, complaint: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_METABASE_")}
    env.update(
        {
            "SENTIMENT_METABASE_ADMIN_EMAIL": "a@b.c",
            "SENTIMENT_METABASE_ADMIN_PASSWORD": "Secret123",
            "SENTIMENT_METABASE_WAREHOUSE_HOST": "h",
            "SENTIMENT_METABASE_WAREHOUSE_USER": "bi",
            "SENTIMENT_METABASE_WAREHOUSE_PASSWORD": "pw",
        }
    )
    if value is None:
        env.pop(variable)
    else:
        env[variable] = value
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "sentiment-pipeline"),
            "metabase",
            "provision",
            "--url",
            current_fake.url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert complaint in result.stderr and "Traceback" not in result.stderr
    assert current_fake.state.requests == {}


@pytest.mark.parametrize(
    ("dataset_query", "expected"),
    [
        (
            {"type": "native", "database": 2, "native": {"query": "SELECT 1", "template-tags": {}}},
            (2, "SELECT 1"),
        ),
        (
            {
                "lib/type": "mbql/query",
                "database": 2,
                "stages": [{"lib/type": "mbql.stage/native", "native": "SELECT 1", "template-tags": {}}],
            },
            (2, "SELECT 1"),
        ),
        (
            {
                "lib/type": "mbql/query",
                "database": 2,
                "stages": [{"lib/type": "mbql.stage/mbql", "source-table": 7}],
            },
            (2, None),
        ),
        ({"type": "query", "database": 2, "query": {"source-table": 7}}, (2, None)),
        (None, (None, None)),
    ],
    ids=["legacy-native", "mbql5-native", "mbql5-structured", "legacy-structured", "none"],
)
def test_saved_sql_is_read_from_either_query_shape(dataset_query: Any, expected: tuple[Any, Any]) -> None:
    assert native_query_of(dataset_query) == expected


def test_the_server_version_picks_the_query_shape() -> None:
    assert major_version({"version": {"tag": "v0.58.39"}}) == 58
    assert major_version({"version": {"tag": "v1.52.4"}}) == 52  # the Enterprise edition counts the same
    assert major_version({"version": {"tag": "vUNKNOWN"}}) is None
    assert major_version({}) is None
    assert native_dataset_query(3, "SELECT 1", mbql5=True)["stages"][0]["native"] == "SELECT 1"
    assert native_dataset_query(3, "SELECT 1", mbql5=False)["native"]["query"] == "SELECT 1"


# ------------------------------------------------------------------- the fake is as strict as Metabase
def admin_client_logged_in(fake: FakeMetabase) -> MetabaseClient:
    client = MetabaseClient(fake.url)
    client.login("admin@sentiment.test", ADMIN_PASSWORD)
    return client


def test_fake_setup_refuses_a_wrong_token_with_400_and_a_second_user_with_403(fake: FakeMetabase) -> None:
    with MetabaseClient(fake.url) as client:
        user = {"email": "admin@sentiment.test", "password": ADMIN_PASSWORD}
        with pytest.raises(MetabaseError) as wrong:
            client.setup("not-the-token", user=user, prefs={"site_name": "Fake"})
        assert wrong.value.status == 400 and "Token does not match the setup token." in wrong.value.detail
        token = client.session_properties()["setup-token"]
        client.setup(token, user=user, prefs={"site_name": "Fake"})
        with pytest.raises(MetabaseError) as second:
            client.setup(token, user={**user, "email": "two@sentiment.test"}, prefs={"site_name": "Fake"})
        assert second.value.status == 403 and "a user currently exists" in second.value.detail


def test_fake_cards_need_a_non_blank_description_on_create_only(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    result = run(settings_for(fake, mariadb, warehouse))
    with admin_client_logged_in(fake) as client:
        with pytest.raises(MetabaseError) as blank:
            client.create_card(card_body(result.database_id, description=""))
        assert blank.value.status == 400 and "description" in blank.value.detail
        card = client.create_card(card_body(result.database_id, description=None))
        assert client.update_card(card["id"], {"description": ""})["description"] == ""


def test_fake_returns_queries_in_the_shape_of_its_version(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    result = run(settings_for(fake, mariadb, warehouse))
    with admin_client_logged_in(fake) as client:
        card = client.create_card(card_body(result.database_id))  # sent in the legacy shape
        listed = next(c for c in client.list_cards() if c["id"] == card["id"])
    if fake.version.mbql5:
        assert listed["dataset_query"] == {
            "lib/type": "mbql/query",
            "database": result.database_id,
            "stages": [{"lib/type": "mbql.stage/native", "native": "SELECT 1", "template-tags": {}}],
        }
    else:
        assert listed["dataset_query"]["native"]["query"] == "SELECT 1"
        assert "stages" not in listed["dataset_query"]


def test_fake_tests_the_connection_only_when_the_details_change(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    result = run(settings_for(fake, mariadb, warehouse))
    tests = fake.state.connection_tests
    with admin_client_logged_in(fake) as client:
        stored = next(d for d in client.list_databases() if d["id"] == result.database_id)
        assert stored["details"]["password"] == "**MetabasePass**"
        client.update_database(result.database_id, {"details": stored["details"]})  # placeholder: unchanged
        assert fake.state.connection_tests == tests
        with pytest.raises(MetabaseError) as refused:
            client.update_database(result.database_id, {"details": {**stored["details"], "password": "nope"}})
        assert refused.value.status == 400 and fake.state.connection_tests == tests + 1


def test_fake_rebuilds_tabs_from_a_dashcards_update_as_metabase_does(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    """Why the provisioner sends ``tabs``: without them Metabase deletes the dashboard's tabs."""
    first = run(settings_for(fake, mariadb, warehouse))
    with admin_client_logged_in(fake) as client:
        add_tabs_and_own_card(client, first.dashboard_id, first.database_id)
        view = client.get_dashboard(first.dashboard_id)
        before = copy.deepcopy((fake.state.tabs, fake.state.dashcards))
        # Dashcards as read (each naming its tab) without the tabs: their tabs go, the update breaks.
        with pytest.raises(MetabaseError) as broken:
            client.update_dashboard(first.dashboard_id, {"dashcards": view["dashcards"]})
        assert broken.value.status == 500
        assert (fake.state.tabs, fake.state.dashcards) == before
        # Dashcards without a tab (the previous provisioner's own ones) and no tabs:
        untabbed = [{**d, "dashboard_tab_id": None} for d in view["dashcards"]]
        if fake.version.tab_check_on_request:
            client.update_dashboard(first.dashboard_id, {"dashcards": untabbed})  # accepted...
            assert tab_names(fake, first.dashboard_id) == {}  # ...and every hand-made tab is lost
        else:
            with pytest.raises(MetabaseError) as refused:
                client.update_dashboard(first.dashboard_id, {"dashcards": untabbed})
            assert refused.value.status == 400 and TAB_ERROR in refused.value.detail
