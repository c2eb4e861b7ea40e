"""Business-intelligence provisioning: Metabase set up through its REST API (see docs/metabase.md).

``metabase`` is the HTTP client, ``questions`` the dashboard content (native SQL over the fact table),
``provisioning`` the idempotent plan that converges a Metabase instance to that content, and
``settings`` its ``SENTIMENT_METABASE_*`` configuration.
"""
