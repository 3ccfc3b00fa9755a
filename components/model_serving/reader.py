"""Create (or bring up to date) the read-only MLflow user the serving pods log in as, through MLflow's basic-auth
REST API, with the admin's login. Run by the ModelServing bootstrap Job as `python -c <this file>` in the pinned
MLflow image; the real-server test runs the same rendered command against MLflow with basic auth.

Idempotent and convergent: an existing user gets the current password (the Secret is the truth), and an existing
grant is replaced by READ (someone may have widened it by hand). MLflow 3.15 removed the per-resource permission
endpoints (`registered-models/permissions/create`, `experiments/permissions/create`); grants go through the unified
`/api/3.0/mlflow/users/permissions/grant`, which refuses a duplicate, hence revoke-then-grant.
It imports the standard library only, so it starts in a second and needs no writable home.

Environment:
    MLFLOW_TRACKING_URI                        the platform's MLflow
    MLFLOW_ADMIN_USERNAME / _PASSWORD          the admin's login (Secret mlflow-auth)
    SERVING_READER_USERNAME / _PASSWORD        the read-only user (its own Secret, also mounted by the serving pods)
    SERVING_READER_MODELS                      registered model names, comma-separated, granted READ
    SERVING_READER_WAIT_SECONDS                how long to wait for MLflow to answer (default 300)
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
# Any experiment: a served version's files are its logged model's, which MLflow's artifact proxy guards by the
# experiment they were logged in, and versions of one model may come from any experiment. MLflow's basic auth
# (3.15) accepts "*" as an experiment id for a permission on every experiment.
EVERY_EXPERIMENT = "*"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code = status, code


def call(base: str, auth: tuple[str, str], method: str, path: str, body: dict | None = None) -> dict:
    token = base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(
        base.rstrip("/") + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode() or "{}"
            return json.loads(text)
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"message": text[:500]}
        raise ApiError(error.code, answer.get("error_code", ""), answer.get("message", "")) from None


def wait_for(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError) as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"MLflow at {base} did not answer /health within {seconds:.0f}s: {error}") from None
        time.sleep(3)


def ensure_user(base: str, admin: tuple[str, str], user: str, password: str) -> str:
    try:
        call(base, admin, "POST", "/api/2.0/mlflow/users/create", {"username": user, "password": password})
        return "created"
    except ApiError as error:
        if error.code != ALREADY_EXISTS:
            raise
    call(base, admin, "PATCH", "/api/2.0/mlflow/users/update-password", {"username": user, "password": password})
    return "password_set"


def ensure_read(base: str, admin: tuple[str, str], user: str, resource_type: str, resource_id: str) -> str:
    """READ, exactly, for `user` on one resource (an existing grant of another level is replaced)."""
    grant = {"username": user, "resource_type": resource_type, "resource_id": resource_id}
    try:
        call(base, admin, "POST", "/api/3.0/mlflow/users/permissions/grant", {**grant, "permission": "READ"})
        return "granted"
    except ApiError as error:
        if error.code != ALREADY_EXISTS:
            raise
    call(base, admin, "POST", "/api/3.0/mlflow/users/permissions/revoke", grant)
    call(base, admin, "POST", "/api/3.0/mlflow/users/permissions/grant", {**grant, "permission": "READ"})
    return "regranted"


def main(environ: dict[str, str]) -> int:
    base = environ["MLFLOW_TRACKING_URI"]
    admin = (environ["MLFLOW_ADMIN_USERNAME"], environ["MLFLOW_ADMIN_PASSWORD"])
    user, password = environ["SERVING_READER_USERNAME"], environ["SERVING_READER_PASSWORD"]
    models = [m for m in environ.get("SERVING_READER_MODELS", "").split(",") if m]
    wait_for(base, float(environ.get("SERVING_READER_WAIT_SECONDS", "300")))
    print(f"event=user result={ensure_user(base, admin, user, password)} username={user}", flush=True)
    grants = [("registered_model", model) for model in models] + [("experiment", EVERY_EXPERIMENT)]
    for resource_type, resource_id in grants:
        result = ensure_read(base, admin, user, resource_type, resource_id)
        print(f"event=grant result={result} username={user} {resource_type}={resource_id} permission=READ", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(dict(os.environ)))
    except ApiError as error:
        sys.exit(f"event=failed {error}")
