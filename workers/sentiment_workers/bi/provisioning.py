"""Converge a Metabase instance to the sentiment dashboard, idempotently.

Steps: wait for ``/api/health``; create the first administrator through ``/api/setup`` (or log in when
one exists); add or update the MySQL database entry (read-only BI user); start a schema sync; create or
update the native SQL questions; create the dashboard and place the questions on it. Every item is found
by name first, so running it again changes nothing and duplicates nothing: a question is rewritten only
when its SQL, database, display, description or settings differ (read in the legacy or the MBQL 5 shape,
whichever the server returns), the dashboard only when a question is missing or moved. Dashcards and tabs
someone added by hand are kept: a dashboard update always sends the dashboard's tabs back, because
Metabase rebuilds the tabs from the request and deletes those left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentiment_workers.bi.metabase import (
    MBQL5_SINCE,
    MetabaseClient,
    MetabaseError,
    major_version,
    native_dataset_query,
    native_query_of,
)
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


def card_payload(question: Question, database_id: int, *, mbql5: bool = False) -> dict[str, Any]:
    """The ``POST/PUT /api/card`` body of a native SQL question (query in the server's own shape)."""
    return {
        "name": question.name,
        "description": question.description,
        "display": question.display,
        "type": "question",
        "visualization_settings": question.visualization_settings,
        "dataset_query": native_dataset_query(database_id, question.sql, mbql5=mbql5),
    }


def card_differs(card: dict[str, Any], question: Question, database_id: int) -> bool:
    """Whether a saved card differs from ``question``; its query may be legacy or MBQL 5 (v0.57+)."""
    return (
        card.get("display") != question.display
        or (card.get("description") or "") != question.description
        or native_query_of(card.get("dataset_query")) != (database_id, question.sql)
        or (card.get("visualization_settings") or {}) != question.visualization_settings
    )


def _ensure_session(
    client: MetabaseClient, settings: MetabaseSettings, result_created: list[str]
) -> dict[str, Any]:
    """Log in (or create the first administrator); returns the server's session properties."""
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
            return props
        except MetabaseError as exc:
            # 403 "... can only be used to create the first user, however a user currently exists": another
            # run created it meanwhile; log in below. (A wrong token is a 400 and is raised: setup/api.clj.)
            if exc.status != 403:
                raise
    client.login(settings.admin_email, settings.admin_secret())
    log.info("metabase_logged_in", email=settings.admin_email)
    return props


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
    mbql5: bool,
    created: list[str],
    updated: list[str],
) -> dict[str, int]:
    cards = client.list_cards()
    ids: dict[str, int] = {}
    for question in questions:
        card = _find_by_name(cards, question.name)
        if card is None:
            card = client.create_card(card_payload(question, database_id, mbql5=mbql5))
            created.append(f"card:{question.name}")
        elif card_differs(card, question, database_id):
            card = client.update_card(int(card["id"]), card_payload(question, database_id, mbql5=mbql5))
            updated.append(f"card:{question.name}")
        ids[question.name] = int(card["id"])
    return ids


def _tab_order(tabs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tabs, key=lambda t: (int(t.get("position") or 0), int(t["id"])))


def dashboard_update(
    view: dict[str, Any], questions: tuple[Question, ...], card_ids: dict[str, int]
) -> dict[str, Any] | None:
    """The ``PUT /api/dashboard/:id`` body placing ``questions`` on the dashboard ``view`` (from GET), or
    None when they already sit where they should.

    The body carries ``tabs`` as well as ``dashcards``: Metabase rebuilds a dashboard's tabs from the
    request (``update-dashcards-and-tabs!``: tabs left out are deleted with their cards; v0.52's
    src/metabase/api/dashboard.clj, today's src/metabase/dashboards_rest/api.clj), and once a dashboard has
    tabs every dashcard must name one ("This dashboard has tab, makes sure every card has a tab", 400).
    Cards someone else placed keep their place and tab; a missing question goes on the tab where the other
    questions are, else the first tab."""
    current: list[dict[str, Any]] = list(view.get("dashcards") or [])
    tabs = _tab_order(list(view.get("tabs") or []))
    ours = set(card_ids.values())
    by_card: dict[int, dict[str, Any]] = {}
    for dashcard in current:
        if dashcard.get("card_id") is not None:
            by_card.setdefault(int(dashcard["card_id"]), dashcard)
    home_tab: int | None = None
    if tabs:
        tab_ids = {int(t["id"]) for t in tabs}
        placed = [
            int(by_card[c]["dashboard_tab_id"])
            for c in card_ids.values()
            if c in by_card and by_card[c].get("dashboard_tab_id") in tab_ids
        ]
        home_tab = placed[0] if placed else int(tabs[0]["id"])
    managed = [by_card[c] for c in ours if c in by_card]  # one dashcard per question is ours to place
    # Keep, as they are, what someone else placed there (extra copies of our questions included).
    dashcards: list[dict[str, Any]] = [d for d in current if not any(d is m for m in managed)]
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
        tab_id = home_tab
        if existing is None:
            changed = True
            dashcard_id = next_new_id
            next_new_id -= 1
        else:
            dashcard_id = int(existing["id"])
            changed |= any(existing.get(k) != layout[k] for k in _LAYOUT_KEYS)
            if tabs and existing.get("dashboard_tab_id") is not None:
                tab_id = int(existing["dashboard_tab_id"])
        placed_card: dict[str, Any] = {
            "id": dashcard_id,
            "card_id": card_id,
            **layout,
            "parameter_mappings": (existing or {}).get("parameter_mappings") or [],
            "series": (existing or {}).get("series") or [],
            "visualization_settings": (existing or {}).get("visualization_settings") or {},
        }
        if tab_id is not None:
            placed_card["dashboard_tab_id"] = tab_id
        dashcards.append(placed_card)
    if not changed:
        return None
    return {
        "dashcards": dashcards,
        "tabs": [{"id": int(t["id"]), "name": t.get("name") or f"Tab {i + 1}"} for i, t in enumerate(tabs)],
    }


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
    body = dashboard_update(client.get_dashboard(dashboard_id), questions, card_ids)
    if body is not None:
        client.update_dashboard(dashboard_id, body)
        updated.append(f"dashboard:{settings.dashboard_name}:dashcards")
    return dashboard_id


def provision(client: MetabaseClient, settings: MetabaseSettings) -> ProvisionResult:
    """Bring Metabase to the wanted state; safe to run any number of times."""
    created: list[str] = []
    updated: list[str] = []
    client.wait_until_healthy(settings.wait_timeout_seconds)
    props = _ensure_session(client, settings, created)
    major = major_version(props)
    mbql5 = major is not None and major >= MBQL5_SINCE
    database_id = _ensure_database(client, settings, created)
    questions = dashboard_questions(
        settings.warehouse_table,
        by_sentiment_display=settings.by_sentiment_display,
        per_day_display=settings.per_day_display,
    )
    card_ids = _ensure_cards(client, questions, database_id, mbql5, created, updated)
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
