"""Converge a Metabase instance to the sentiment dashboard, idempotently.

Steps: wait for ``/api/health``; create the first administrator through ``/api/setup`` (or log in when
one exists); add or update the MySQL database entry (read-only BI user); start a schema sync; create or
update the native SQL questions; create the dashboard and place the questions on it. Every item is found
by name first, so running it again changes nothing and duplicates nothing; dashcards someone added by
hand to the dashboard are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentiment_workers.bi.metabase import MetabaseClient, MetabaseError
from sentiment_workers.bi.questions import Question, dashboard_questions
from sentiment_workers.bi.settings import MetabaseSettings
from sentiment_workers.logging import get_logger

log = get_logger("metabase-provisioner")

_LAYOUT_KEYS = ("row", "col", "size_x", "size_y")


@dataclass
class ProvisionResult:
    """What the run found and did (ids are Metabase's)."""

    database_id: int
    dashboard_id: int
    card_ids: dict[str, int]
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _find_by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The first live (not archived) item called ``name``, oldest id first."""
    matches = [i for i in items if i.get("name") == name and not i.get("archived", False)]
    return min(matches, key=lambda i: int(i["id"])) if matches else None


def database_payload(settings: MetabaseSettings) -> dict[str, Any]:
    """The ``POST/PUT /api/database`` body: MySQL through the read-only BI user."""
    return {
        "name": settings.database_name,
        "engine": "mysql",
        "details": {
            "host": settings.warehouse_host,
            "port": settings.warehouse_port,
            "dbname": settings.warehouse_database,
            "user": settings.warehouse_user,
            "password": settings.warehouse_secret(),
            "ssl": settings.warehouse_ssl,
            "additional-options": settings.warehouse_jdbc_options,
            "tunnel-enabled": False,
            "advanced-options": False,
        },
        "is_full_sync": True,
        "is_on_demand": False,
    }


def card_payload(question: Question, database_id: int) -> dict[str, Any]:
    """The ``POST/PUT /api/card`` body of a native SQL question."""
    return {
        "name": question.name,
        "description": question.description,
        "display": question.display,
        "type": "question",
        "visualization_settings": question.visualization_settings,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": question.sql, "template-tags": {}},
        },
    }


def _card_differs(card: dict[str, Any], wanted: dict[str, Any]) -> bool:
    query = card.get("dataset_query") or {}
    return (
        card.get("display") != wanted["display"]
        or card.get("description") != wanted["description"]
        or query.get("database") != wanted["dataset_query"]["database"]
        or (query.get("native") or {}).get("query") != wanted["dataset_query"]["native"]["query"]
        or (card.get("visualization_settings") or {}) != wanted["visualization_settings"]
    )


def _ensure_session(client: MetabaseClient, settings: MetabaseSettings, result_created: list[str]) -> None:
    props = client.session_properties()
    if not props.get("has-user-setup") and props.get("setup-token"):
        try:
            client.setup(
                str(props["setup-token"]),
                user={
                    "email": settings.admin_email,
                    "first_name": settings.admin_first_name,
                    "last_name": settings.admin_last_name,
                    "password": settings.admin_secret(),
                    "site_name": settings.site_name,
                },
                prefs={"site_name": settings.site_name, "site_locale": "en", "allow_tracking": False},
            )
            result_created.append("admin")
            log.info("metabase_admin_created", email=settings.admin_email)
            return
        except MetabaseError as exc:
            if exc.status != 403:  # 403: another run created the first user meanwhile; log in below
                raise
    client.login(settings.admin_email, settings.admin_secret())
    log.info("metabase_logged_in", email=settings.admin_email)


def _ensure_database(client: MetabaseClient, settings: MetabaseSettings, created: list[str]) -> int:
    payload = database_payload(settings)
    existing = _find_by_name(client.list_databases(), settings.database_name)
    if existing is None:
        database = client.create_database(payload)
        created.append(f"database:{settings.database_name}")
        log.info("metabase_database_created", database_id=database["id"], host=settings.warehouse_host)
    else:
        # Always re-send the connection details: the password (which Metabase never returns) may have
        # been rotated in the Secret. The entry keeps its id, so questions stay attached.
        # (Not counted as a change: the stored state is the same unless the Secret changed.)
        client.update_database(int(existing["id"]), payload)
        database = existing
        log.info("metabase_database_refreshed", database_id=existing["id"], host=settings.warehouse_host)
    database_id = int(database["id"])
    client.sync_schema(database_id)
    return database_id


def _ensure_cards(
    client: MetabaseClient,
    questions: tuple[Question, ...],
    database_id: int,
    created: list[str],
    updated: list[str],
) -> dict[str, int]:
    cards = client.list_cards()
    ids: dict[str, int] = {}
    for question in questions:
        wanted = card_payload(question, database_id)
        card = _find_by_name(cards, question.name)
        if card is None:
            card = client.create_card(wanted)
            created.append(f"card:{question.name}")
        elif _card_differs(card, wanted):
            card = client.update_card(int(card["id"]), wanted)
            updated.append(f"card:{question.name}")
        ids[question.name] = int(card["id"])
    return ids


def _ensure_dashboard(
    client: MetabaseClient,
    settings: MetabaseSettings,
    questions: tuple[Question, ...],
    card_ids: dict[str, int],
    created: list[str],
    updated: list[str],
) -> int:
    dashboard = _find_by_name(client.list_dashboards(), settings.dashboard_name)
    if dashboard is None:
        dashboard = client.create_dashboard(
            {"name": settings.dashboard_name, "description": "Sentiment of the message stream (read-only)."}
        )
        created.append(f"dashboard:{settings.dashboard_name}")
    dashboard_id = int(dashboard["id"])
    current = client.get_dashboard(dashboard_id).get("dashcards") or []

    by_card: dict[int, dict[str, Any]] = {}
    for dashcard in current:
        if dashcard.get("card_id") is not None:
            by_card.setdefault(int(dashcard["card_id"]), dashcard)
    ours = set(card_ids.values())
    dashcards: list[dict[str, Any]] = [
        d for d in current if d.get("card_id") is None or int(d["card_id"]) not in ours
    ]  # keep what someone else placed there
    changed = False
    next_new_id = -1
    for question in questions:
        card_id = card_ids[question.name]
        layout = {
            "row": question.layout.row,
            "col": question.layout.col,
            "size_x": question.layout.size_x,
            "size_y": question.layout.size_y,
        }
        existing = by_card.get(card_id)
        if existing is None:
            changed = True
            dashcard_id = next_new_id
            next_new_id -= 1
        else:
            dashcard_id = int(existing["id"])
            changed |= any(existing.get(k) != layout[k] for k in _LAYOUT_KEYS)
        dashcards.append(
            {
                "id": dashcard_id,
                "card_id": card_id,
                **layout,
                "parameter_mappings": [],
                "series": [],
                "visualization_settings": {},
            }
        )
    if changed:
        client.update_dashboard(dashboard_id, {"dashcards": dashcards})
        updated.append(f"dashboard:{settings.dashboard_name}:dashcards")
    return dashboard_id


def provision(client: MetabaseClient, settings: MetabaseSettings) -> ProvisionResult:
    """Bring Metabase to the wanted state; safe to run any number of times."""
    created: list[str] = []
    updated: list[str] = []
    client.wait_until_healthy(settings.wait_timeout_seconds)
    _ensure_session(client, settings, created)
    database_id = _ensure_database(client, settings, created)
    questions = dashboard_questions(settings.warehouse_table)
    card_ids = _ensure_cards(client, questions, database_id, created, updated)
    dashboard_id = _ensure_dashboard(client, settings, questions, card_ids, created, updated)
    result = ProvisionResult(
        database_id=database_id,
        dashboard_id=dashboard_id,
        card_ids=card_ids,
        created=created,
        updated=updated,
    )
    log.info(
        "metabase_provisioned",
        database_id=database_id,
        dashboard_id=dashboard_id,
        cards=card_ids,
        created=created,
        updated=updated,
    )
    return result
