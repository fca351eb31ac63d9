"""One router per resource of the REST API (`/api/v1/...`); each is a thin adapter: parse, call a service, render."""
