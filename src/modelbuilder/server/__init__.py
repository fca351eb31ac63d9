"""The server: REST API (`/api/v1`, OpenAPI at `/openapi.json`), the portal, and the scheduler's agent.

    modelbuilder server [--host 127.0.0.1] [--port 8765] [--token TOKEN]

`api.create_app` builds the app, `serve.serve` runs it. Routers read the request, call the application
layer (`modelbuilder.sdk`) and render its answer; `fixes.py` words an error's fix as API requests.
"""

API_PREFIX = "/api/v1"
