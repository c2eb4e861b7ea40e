"""Metabase provisioning (``sentiment_workers.bi``) against a FAITHFUL FAKE of Metabase's documented API.

Metabase cannot run on these machines (no jar, no Docker), so ``tests/deploy/metabase_fake.py`` serves
the endpoints the provisioner uses over real HTTP on loopback, with Metabase's request/response shapes and
validation. Like Metabase, the fake tests database connections and runs saved questions against the real
MySQL server behind it: here MariaDB, where the chart's own init script created the application user and
the read-only BI user. So these tests check, for real, that the dashboard's questions work through the
read-only account, and that re-running the provisioner duplicates nothing."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sentiment_workers.adapters.mysql import create_table_sql
from sentiment_workers.bi.metabase import MetabaseClient, MetabaseError, MetabaseNotReady
from sentiment_workers.bi.provisioning import provision
from sentiment_workers.bi.questions import dashboard_questions
from sentiment_workers.bi.settings import MetabaseSettings

from tests.deploy.conftest import REPO, MariaDB, Render
from tests.deploy.metabase_fake import FakeMetabase

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


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    with FakeMetabase(health_checks_before_ready=2) as server:
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


def test_provisioning_builds_the_dashboard_through_the_read_only_user(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    with MetabaseClient(settings.url) as client:
        result = provision(client, settings)

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

    assert {c["name"] for c in state.cards.values()} == {
        "Total messages",
        "Messages by sentiment",
        "Messages per day",
    }
    dashboard = state.dashboards[result.dashboard_id]
    assert dashboard["name"] == "Sentiment overview"
    placed = {d["card_id"] for d in state.dashcards.values() if d["dashboard_id"] == dashboard["id"]}
    assert placed == set(result.card_ids.values())


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


def test_rerunning_changes_nothing_and_duplicates_nothing(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    with MetabaseClient(settings.url) as client:
        first = provision(client, settings)
    with MetabaseClient(settings.url) as client:  # a new process: logs in instead of setting up
        second = provision(client, settings)
    assert first.changed and not second.changed
    assert (second.database_id, second.dashboard_id, second.card_ids) == (
        first.database_id,
        first.dashboard_id,
        first.card_ids,
    )
    state = fake.state
    assert len(state.users) == 1
    assert len([d for d in state.databases.values() if not d["is_sample"]]) == 1
    assert len(state.cards) == len(dashboard_questions())
    assert len(state.dashboards) == 1
    assert len(state.dashcards) == len(dashboard_questions())
    assert state.requests[("POST", r"/api/setup")] == 1
    assert state.requests[("POST", r"/api/card")] == len(dashboard_questions())
    assert state.requests[("PUT", r"/api/dashboard/(\d+)")] == 1


def test_rerun_repairs_drift_and_keeps_hand_added_dashcards(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse)
    with MetabaseClient(settings.url) as client:
        first = provision(client, settings)
        # Someone edits a question's SQL, moves a card and adds their own card to the dashboard.
        total_id = first.card_ids["Total messages"]
        fake.state.cards[total_id]["dataset_query"]["native"]["query"] = "SELECT 42"
        moved = next(d for d in fake.state.dashcards.values() if d["card_id"] == total_id)
        moved["row"] = 30
        own = client.create_card(
            {
                "name": "Mine",
                "display": "table",
                "visualization_settings": {},
                "dataset_query": {
                    "type": "native",
                    "database": first.database_id,
                    "native": {"query": "SELECT 1"},
                },
            }
        )
        dashcards = client.get_dashboard(first.dashboard_id)["dashcards"]
        client.update_dashboard(
            first.dashboard_id,
            {
                "dashcards": [
                    *dashcards,
                    {"id": -1, "card_id": own["id"], "row": 20, "col": 0, "size_x": 4, "size_y": 4},
                ]
            },
        )
        second = provision(client, settings)
    assert second.updated == ["card:Total messages", "dashboard:Sentiment overview:dashcards"]
    assert "COUNT(*)" in fake.state.cards[total_id]["dataset_query"]["native"]["query"]
    positions = {d["card_id"]: d["row"] for d in fake.state.dashcards.values()}
    assert positions[total_id] == 0
    assert own["id"] in positions  # the hand-placed card is still there


def test_a_weak_admin_password_is_refused_with_metabase_message(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse, admin_password="password")
    with MetabaseClient(settings.url) as client, pytest.raises(MetabaseError) as refused:
        provision(client, settings)
    assert refused.value.status == 400
    assert "password" in refused.value.detail


def test_wrong_warehouse_credentials_fail_before_anything_is_saved(
    fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
) -> None:
    settings = settings_for(fake, mariadb, warehouse, warehouse_password="wrong-password")
    with MetabaseClient(settings.url) as client, pytest.raises(MetabaseError) as refused:
        provision(client, settings)
    assert refused.value.status == 400 and "Access denied" in refused.value.detail
    assert [d for d in fake.state.databases.values() if not d["is_sample"]] == []
    assert fake.state.cards == {}


def test_waiting_for_metabase_gives_up_with_a_clear_error() -> None:
    with (
        FakeMetabase(health_checks_before_ready=10_000) as slow,
        MetabaseClient(slow.url) as client,
        pytest.raises(MetabaseNotReady),
    ):
        client.wait_until_healthy(timeout=1.0, interval=0.2)


def test_cli_provisions_from_environment_and_files_only(
    tmp_path: Path, fake: FakeMetabase, mariadb: MariaDB, warehouse: dict[str, str]
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
    }
    cli = [
        str(REPO / ".venv" / "bin" / "sentiment-pipeline"),
        "metabase",
        "provision",
        "--url",
        fake.url,
        "--json",
    ]
    for _ in range(2):
        result = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert ADMIN_PASSWORD not in result.stdout + result.stderr
        assert warehouse["bi_password"] not in result.stdout + result.stderr
    assert [d["name"] for d in fake.state.dashboards.values()] == ["From the CLI"]
    assert fake.state.users["admin@sentiment.test"]["password"] == ADMIN_PASSWORD


def test_cli_rejects_missing_credentials_with_a_clear_error(fake: FakeMetabase) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_METABASE_")}
    env.update({"SENTIMENT_METABASE_ADMIN_EMAIL": "a@b.c", "SENTIMENT_METABASE_WAREHOUSE_HOST": "h"})
    env["SENTIMENT_METABASE_WAREHOUSE_USER"] = "bi"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "sentiment-pipeline"), "metabase", "provision", "--url", fake.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SENTIMENT_METABASE_ADMIN_PASSWORD" in result.stderr
    assert fake.state.requests == {}
