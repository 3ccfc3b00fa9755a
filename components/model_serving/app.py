"""Model serving: one registered MLflow model, followed by its alias, behind a small FastAPI app.

It runs with uvicorn inside the pinned MLflow image and reaches the pod as a ConfigMap-mounted file, so it is
self-contained on purpose: it imports the standard library and what that image ships (MLflow, FastAPI, uvicorn,
prometheus_client), never this repository. uvicorn calls the factory (`uvicorn app:create_app --factory`), so importing
the module configures and starts nothing.

Environment:
    MLFLOW_TRACKING_URI                  the platform's MLflow. The server proxies artifacts, so the pod needs no
                                         object-store credentials nor a route to the object store.
    MLFLOW_TRACKING_USERNAME / _PASSWORD with MLflow basic auth on: a read-only user, from a Secret.
    SERVING_MODEL_NAME                   registered model name.
    SERVING_MODEL_ALIAS                  alias to follow, e.g. `champion`.
    SERVING_POLL_SECONDS                 how often the alias is resolved again (default 30).
    SERVING_DOWNLOAD_DIR                 where versions are downloaded (default <tmp>/models, an emptyDir in the pod).

Endpoints:
    POST /invocations  MLflow's scoring protocol, parsed by MLflow's own scoring server code, so clients can switch
                       between this app and `mlflow models serve`.
    GET  /healthz      the process is up (liveness).
    GET  /readyz       a model version is loaded (readiness); 503 with the reason otherwise.
    GET  /metrics      Prometheus text format.
    GET  /ping, /health, /version  as `mlflow models serve` answers them.

Alias moves: a watcher thread resolves the alias every poll. A new version is downloaded and loaded beside the
one being served, checked against its own serving input example, then swapped in with one reference assignment;
until then, and if anything fails, the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

ENV_MODEL = "SERVING_MODEL_NAME"
ENV_ALIAS = "SERVING_MODEL_ALIAS"
ENV_POLL = "SERVING_POLL_SECONDS"
ENV_DOWNLOAD_DIR = "SERVING_DOWNLOAD_DIR"
DEFAULT_POLL_SECONDS = 30.0
MLFLOW_CLIENT_DEFAULTS = {
    # MLflow >= 3.x servers with an S3 artifact destination tell clients (/server-info) to download artifacts straight
    # from the bucket with presigned URLs. The pod may reach MLflow only (NetworkPolicy) and holds no storage
    # credentials: downloads go through the server's artifact proxy.
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    # MLflow retries a failing REST call seven times with exponential backoff: minutes during which the not-ready
    # reason would be stale. The watcher retries on its own schedule, so one call gives up sooner.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
# MLflow's parse errors quote the request body; a client's 10 MB payload must not come back in the error.
MAX_MESSAGE_CHARS = 2000

log = logging.getLogger("model_serving")

METRICS = CollectorRegistry()
ProcessCollector(registry=METRICS)  # process_resident_memory_bytes: the pod's memory next to its traffic
REQUESTS = Counter(
    "model_serving_requests", "Prediction requests (POST /invocations) by HTTP status.",
    ["model", "alias", "status"], registry=METRICS,
)
LATENCY = Histogram(
    "model_serving_request_duration_seconds", "Prediction request latency by HTTP status.",
    ["model", "alias", "status"], registry=METRICS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
VERSION_INFO = Gauge(
    "model_version_info", "The registered model version being served (1; one series per model and alias).",
    ["model", "alias", "version"], registry=METRICS,
)
READY = Gauge("model_serving_ready", "1 while a model version is loaded and served.", ["model", "alias"], registry=METRICS)
ALIAS_CHECKS = Counter(
    "model_serving_alias_checks",
    "Alias resolutions by result: unchanged, swapped, resolve_failed, load_failed, rejected.",
    ["model", "alias", "result"], registry=METRICS,
)


def _configure_logging() -> None:
    # uvicorn configures only its own loggers; ours needs a handler, once (uvicorn --reload imports twice).
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def event(level: int, name: str, **fields: Any) -> None:
    """One logfmt line (`event=... key=value`), so Loki's `| logfmt` can filter on model, alias and version."""

    def value(v: Any) -> str:
        text = str(v)
        return json.dumps(text) if not text or any(c in text for c in ' "=') else text

    log.log(level, " ".join(f"{k}={value(v)}" for k, v in {"event": name, **fields}.items()))


@dataclass(frozen=True)
class Settings:
    """What the app serves, from the environment."""

    model: str
    alias: str
    poll_seconds: float
    download_dir: str

    @property
    def uri(self) -> str:
        return f"models:/{self.model}@{self.alias}"


def settings_from(environ: Mapping[str, str]) -> Settings:
    """Settings from environment variables; one ValueError naming every missing or bad variable."""
    problems = []
    if not environ.get("MLFLOW_TRACKING_URI", "").strip():
        problems.append("MLFLOW_TRACKING_URI is not set (the platform's MLflow URL)")
    model, alias = environ.get(ENV_MODEL, "").strip(), environ.get(ENV_ALIAS, "").strip()
    if not model:
        problems.append(f"{ENV_MODEL} is not set (a registered model name)")
    if not alias:
        problems.append(f"{ENV_ALIAS} is not set (an alias of the model, e.g. champion)")
    poll = environ.get(ENV_POLL, str(DEFAULT_POLL_SECONDS))
    try:
        poll_seconds = float(poll)
    except ValueError:
        poll_seconds = 0.0
    if not poll_seconds > 0:
        problems.append(f"{ENV_POLL}={poll!r} is not a positive number of seconds")
    if problems:
        raise ValueError("; ".join(problems))
    download_dir = environ.get(ENV_DOWNLOAD_DIR) or os.path.join(tempfile.gettempdir(), "models")
    return Settings(model=model, alias=alias, poll_seconds=poll_seconds, download_dir=download_dir)


def describe(error: BaseException) -> str:
    """An error as one readable line: MLflow's error code and message, else the exception type and text."""
    code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error) or repr(error)
    text = message if code and message.startswith(code) else f"{code or type(error).__name__}: {message}"
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


@dataclass(frozen=True)
class Served:
    """One loaded model version; requests read the current one once and use it whole."""

    version: str
    model: Any
    input_schema: Any
    directory: str


def _resolve(settings: Settings) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(settings.model, settings.alias).version)


def _load(settings: Settings, version: str) -> Served:
    """Download and load one version by number, not by alias: the alias may move again while we download."""
    import mlflow.artifacts
    import mlflow.pyfunc

    os.makedirs(settings.download_dir, exist_ok=True)
    directory = tempfile.mkdtemp(prefix=f"v{version}-", dir=settings.download_dir)
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{settings.model}/{version}", dst_path=directory)
        model = mlflow.pyfunc.load_model(path)
        served = Served(version=version, model=model, input_schema=model.metadata.get_input_schema(), directory=directory)
        _warm_up(served, path)
        return served
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


class RejectedVersion(Exception):
    """A version that loads but cannot answer its own serving input example."""


def _warm_up(served: Served, path: str) -> None:
    """Score the version's own serving input example through the request path, if it was logged with one: a version
    that cannot answer it must not replace one that works (and the first real request finds it warm)."""
    example = served.model.metadata.get_serving_input(path)
    if example is None:
        return
    try:
        answer = score(served, example.encode(), "application/json")
    except Exception as error:
        raise RejectedVersion(f"its serving input example fails: {describe(error)}") from error
    if answer.status_code != 200:
        raise RejectedVersion(f"its serving input example gets {answer.status_code}: {answer.body.decode()[:MAX_MESSAGE_CHARS]}")


def error_response(status: int, error_code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error in MLflow's shape ({"error_code", "message"}), without the stack trace MLflow would send."""
    body = json.dumps({"error_code": error_code, "message": message[:MAX_MESSAGE_CHARS]})
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def score(served: Served, body: bytes, content_type: str) -> Response:
    """MLflow's own `invocations` (parsing, schema enforcement, prediction, JSON encoding), so the answers are those of
    `mlflow models serve`; its exceptions become 4xx answers with a message."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    headers = {"X-Model-Version": served.version}
    try:
        result = scoring_server.invocations(body, content_type, served.model, served.input_schema)
    except MlflowException as error:
        status = error.get_http_status_code()
        if status >= 500:
            # MLflow already maps prediction errors to 400; anything it still calls a server error here came from
            # the request's content (this function only parses and scores it).
            log.warning("scoring failed with %s", error.error_code, exc_info=True)
            status = 400
        return error_response(status, error.error_code, error.message, headers)
    except Exception as error:
        # Outside MLflow's own checks (MLflow's server would answer 500): the request's content could not be handled.
        log.warning("request could not be scored", exc_info=True)
        return error_response(400, "BAD_REQUEST", f"the request could not be scored: {describe(error)}", headers)
    return Response(content=result.response, status_code=result.status, media_type=result.mimetype, headers=headers)


class ModelWatcher:
    """Follows the alias: resolves it every poll, loads a new version beside the served one, swaps when it is ready."""

    def __init__(self, settings: Settings | None, problem: str = "") -> None:
        self.settings = settings
        self.served: Served | None = None
        self.reason = problem or "no model version loaded yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Download directories still on disk: the served version's and the one before it, which requests that began
        # before the swap may still be reading (python-function models can open artifact files at predict time).
        self._directories: list[str] = []
        self._rejected: dict[str, str] = {}

    @property
    def labels(self) -> dict[str, str]:
        return {"model": self.settings.model, "alias": self.settings.alias} if self.settings else {"model": "", "alias": ""}

    @property
    def alive(self) -> bool:
        """False only if the watcher thread died: then liveness fails and the kubelet restarts the pod."""
        return self._thread is None or self._thread.is_alive()

    def start(self) -> None:
        READY.labels(**self.labels).set(0)
        if self.settings is None:
            event(logging.ERROR, "model_not_ready", reason=self.reason)
            return
        event(logging.INFO, "watching", **self.labels, uri=self.settings.uri, poll_seconds=self.settings.poll_seconds)
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("alias check failed unexpectedly")
            self._stop.wait(self.settings.poll_seconds)

    def refresh(self) -> str:
        """One alias check; returns its result (also counted in model_serving_alias_checks_total)."""
        settings, current = self.settings, self.served
        try:
            version = _resolve(settings)
        except Exception as error:
            return self._problem("resolve_failed", f"cannot resolve {settings.uri}: {describe(error)}")
        if current is not None and current.version == version:
            return self._count("unchanged")
        if version in self._rejected:
            # A registered version's files never change: once rejected, it stays rejected without another download.
            return self._count("rejected")
        if current is None:
            self.reason = f"loading version {version} of {settings.uri}"
        started = time.monotonic()
        try:
            candidate = _load(settings, version)
        except RejectedVersion as error:
            self._rejected[version] = str(error)
            return self._problem("rejected", f"version {version} of {settings.uri} is rejected: {error}", version)
        except Exception as error:
            return self._problem("load_failed", f"cannot load version {version} of {settings.uri}: {describe(error)}", version)
        self._swap(candidate, time.monotonic() - started)
        return self._count("swapped")

    def _count(self, result: str) -> str:
        ALIAS_CHECKS.labels(**self.labels, result=result).inc()
        return result

    def _problem(self, result: str, message: str, version: str = "") -> str:
        current = self.served
        if current is None:
            self.reason = message
            event(logging.ERROR, "model_not_ready", **self.labels, version=version, reason=message)
        else:
            # A registry outage or a bad new version must not take down a version that serves well.
            event(logging.WARNING, "keeping_version", **self.labels, version=current.version, candidate=version, reason=message)
        return self._count(result)

    def _swap(self, candidate: Served, seconds: float) -> None:
        previous = self.served
        self.served = candidate  # one reference assignment: each request sees the old version or the new, whole
        self.reason = ""
        if previous is not None:
            VERSION_INFO.remove(self.settings.model, self.settings.alias, previous.version)
        VERSION_INFO.labels(**self.labels, version=candidate.version).set(1)
        READY.labels(**self.labels).set(1)
        event(logging.INFO, "serving", **self.labels, version=candidate.version,
              previous=previous.version if previous else "none", load_seconds=f"{seconds:.2f}")
        self._directories.append(candidate.directory)
        while len(self._directories) > 2:
            shutil.rmtree(self._directories.pop(0), ignore_errors=True)


def create_app(environ: Mapping[str, str] | None = None) -> FastAPI:
    """The app for one model and alias, configured from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    _configure_logging()
    disable_created_metrics()  # *_created series would double every counter's series; no query of ours reads them
    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        watcher = ModelWatcher(settings_from(environ))
    except ValueError as error:
        # A bad configuration leaves the pod running and not ready, with the reason in /readyz and the log.
        watcher = ModelWatcher(None, problem=f"configuration: {error}")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        watcher.start()
        yield
        watcher.stop()

    app = FastAPI(title="model-serving", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.watcher = watcher

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        served = watcher.served
        if served is None:
            response = error_response(503, "TEMPORARILY_UNAVAILABLE", f"no model version loaded: {watcher.reason}")
        else:
            body = await request.body()
            # Off the event loop, as MLflow's server does: a slow prediction must not stall the probes.
            response = await asyncio.to_thread(score, served, body, request.headers.get("content-type", ""))
        status = str(response.status_code)
        REQUESTS.labels(**watcher.labels, status=status).inc()
        LATENCY.labels(**watcher.labels, status=status).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz")
    async def healthz() -> Response:
        if not watcher.alive:
            return error_response(503, "INTERNAL_ERROR", "the model watcher thread has stopped")
        return Response(content='{"status": "ok"}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        served = watcher.served
        if served is None:
            body = {"ready": False, **watcher.labels, "reason": watcher.reason}
            return Response(content=json.dumps(body), status_code=503, media_type="application/json")
        body = {"ready": True, **watcher.labels, "version": served.version}
        return Response(content=json.dumps(body), media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(content=generate_latest(METRICS), media_type=CONTENT_TYPE_LATEST)

    # What `mlflow models serve` answers besides /invocations, for clients and probes written against it.
    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        return Response(content="\n", status_code=200 if watcher.served else 404, media_type="application/json")

    @app.get("/version")
    async def version() -> Response:
        import mlflow

        return Response(content=mlflow.__version__, media_type="application/json")

    return app
