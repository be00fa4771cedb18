"""The service layer: what juhe-sync does, for every caller (HTTP routes, the CLI, the WebSocket
client). It knows no HTTP; it joins the pure rules of ``ingest`` with ``storage``, ``saas`` and
``sync``."""
