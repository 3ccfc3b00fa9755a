"""The front door: one Gateway API gateway (Envoy Gateway) publishing the stack's UIs and APIs on `<host>.<domain>`,
with cert-manager certificates, HTTP redirected to HTTPS, and single sign-on.

Each published service gets an HTTPRoute in its own namespace, attached to its host's HTTPS listener; a listener
admits routes from that one namespace only. How each is signed in to (`routes`):
- gateway OIDC (an Envoy Gateway SecurityPolicy) for the UIs with no login of their own: Temporal UI, Prometheus,
  Alertmanager; and the MLflow UI, whose basic-auth app keeps a login of its own behind it;
- the application's own login: Grafana (its native generic OAuth against the same provider, per-user identity),
  Airflow (its auth manager), and MLflow's REST API under `/api/` (basic auth, so machine clients keep working);
- an API key (an Envoy Gateway `apiKeyAuth` SecurityPolicy, header `x-api-key`, key generated here) for the model
  endpoints, whose callers are programs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import airflow, kube, mlflow_server, model_serving, observability, temporal_stack
from components.config import ResourceSpec, StackConfig
from components.config.front_door import FrontDoorConfig
from components.facts import ANYWHERE, ComponentFacts, Flow, NamespaceFact, PodSecurity
from components.secret_store import KubernetesSecrets, SecretStore
from components.versions import CHARTS, IMAGES

NAMESPACE = "gateway"
RELEASE = "envoy-gateway"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY = "front-door"
"""The Gateway's name, and the fixed name of its proxies' Service (`kubectl -n <prefix>-gateway get svc front-door`)."""
PROXY_PORTS = {"http": 10080, "https": 10443}
"""Where the proxy pods listen for the Gateway's ports 80 and 443: Envoy Gateway maps ports below 1024 to port +
10000, so the proxies need no NET_BIND_SERVICE and meet the restricted profile."""
PROXY_LABELS = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway"}
"""Labels Envoy Gateway puts on every proxy pod it runs (internal/infrastructure/kubernetes/proxy/resource.go)."""
OIDC_SECRET = "front-door-oidc"
"""Secret holding the OIDC client's secret (key `client-secret`, as the SecurityPolicy reads it) in each namespace
with a route behind gateway OIDC."""
MODEL_KEYS_SECRET = "front-door-model-keys"
"""Secret in the serving namespace with the model endpoints' API keys, by client id (`platform`)."""
API_KEY_HEADER = "x-api-key"
ALERTMANAGER_PORT = 9093

OIDC, OWN_LOGIN, API_KEY = "gateway-oidc", "own-login", "api-key"
PROXY_RESOURCES = ResourceSpec({"cpu": "100m", "memory": "128Mi"}, {"cpu": "1", "memory": "512Mi"})
"""Each Envoy proxy: a handful of routes and certificates. Not measured on a cluster (none here); Envoy Gateway's own
default asks for 512Mi, which a dozen routes do not need."""
CONTROLLER_RESOURCES = ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
"""The Envoy Gateway controller: the chart's own requests and memory limit (v1.9.0 values), stated so the plan counts
them, with a CPU limit added."""
SMALL = ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "100m", "memory": "128Mi"})
"""The certgen Job (one run per install or upgrade), whose chart values set no resources."""

GATEWAY_POD_SECURITY = PodSecurity(
    "restricted",
    "Envoy Gateway's controller and certgen (chart, rendered in tests/test_charts.py) and the proxies it creates "
    "(non-root 65532, drop ALL, RuntimeDefault, unprivileged ports 10080/10443) meet the restricted profile",
)


@dataclass(frozen=True)
class Route:
    """A service published on `<host>.<domain>`: where it goes and how callers sign in."""

    name: str
    """Route name (unique in the stack): the HTTPRoute's, and its SecurityPolicy's prefix."""
    host: str
    """Host key (`mlflow`, `grafana`, ...): the listener it attaches to."""
    namespace: str
    """Namespace role of the backend Service, where the route (and its policy) live."""
    service: str
    """Backend Service name."""
    port: int
    """Backend Service port."""
    target_port: int
    """The pods' port behind it, which the NetworkPolicy admits the proxies to."""
    auth: str
    """OIDC (gateway single sign-on), OWN_LOGIN (the application's own) or API_KEY."""
    why: str
    """Why this auth mode (README and tests quote it)."""
    path: str = "/"
    """Path prefix matched."""
    strip_prefix: bool = False
    """Rewrite `path` to `/` before the backend (model endpoints live at `/<model>/...`)."""


def routes(config: StackConfig) -> tuple[Route, ...]:
    """Every route of the stack's published hosts."""
    door = config.front_door
    present = ["mlflow", "temporal"]
    if config.observability.enabled:
        present += ["grafana", "prometheus", "alertmanager"]
    if config.serving.models:
        present.append("models")
    if config.airflow.enabled:
        present.append("airflow")
    found: list[Route] = []
    for host in door.published(tuple(present)):
        found += _HOSTS[host](config)
    return tuple(found)


def _mlflow(config: StackConfig) -> list[Route]:
    ns, svc, port = mlflow_server.NAMESPACE, mlflow_server.SERVICE_NAME, mlflow_server.PORT
    if not config.mlflow.auth:
        return [Route("mlflow", "mlflow", ns, svc, port, port, OIDC, "no login of its own without mlflow.auth")]
    return [
        # The browser UI (and its /ajax-api/ calls) behind single sign-on; MLflow's basic-auth login still follows.
        Route("mlflow", "mlflow", ns, svc, port, port, OIDC, "UI: single sign-on in front of MLflow's own login"),
        # The Python client and other machines use /api/ with MLflow's basic auth: an OIDC redirect would break them.
        Route("mlflow-api", "mlflow", ns, svc, port, port, OWN_LOGIN, "REST API for machine clients: MLflow basic auth", path="/api/"),
    ]


def _temporal(config: StackConfig) -> list[Route]:
    service, port = ("temporal-ui", temporal_stack.UI_PORT) if config.temporal.engine == "dev" else ("temporal-web", temporal_stack.CHART_UI_PORT)
    return [Route("temporal", "temporal", temporal_stack.NAMESPACE, service, port, port, OIDC, "Temporal UI has no login of its own")]


def _grafana(config: StackConfig) -> list[Route]:
    return [Route(
        "grafana", "grafana", observability.NAMESPACE, f"{observability.KPS_NAME}-grafana", 80, observability.GRAFANA_PORT, OWN_LOGIN,
        "Grafana signs in with the same provider itself (generic OAuth): per-user identity and roles",
    )]


def _prometheus(config: StackConfig) -> list[Route]:
    return [Route(
        "prometheus", "prometheus", observability.NAMESPACE, f"{observability.KPS_NAME}-prometheus", observability.PROMETHEUS_PORT, observability.PROMETHEUS_PORT,
        OIDC, "Prometheus has no login of its own",
    )]


def _alertmanager(config: StackConfig) -> list[Route]:
    return [Route(
        "alertmanager", "alertmanager", observability.NAMESPACE, f"{observability.KPS_NAME}-alertmanager", ALERTMANAGER_PORT,
        ALERTMANAGER_PORT, OIDC, "Alertmanager has no login of its own",
    )]


def _models(config: StackConfig) -> list[Route]:
    port = model_serving.PORT
    return [
        Route(
            f"model-{served.name}", "models", model_serving.NAMESPACE, served.name, port, port, API_KEY,
            "model endpoints are called by programs: an API key, not a browser sign-in", path=f"/{served.name}/",
            strip_prefix=True,
        )
        for served in config.serving.models
    ]


def _airflow(config: StackConfig) -> list[Route]:
    return [Route(
        "airflow", "airflow", airflow.NAMESPACE, airflow.SERVICE_NAME, airflow.API_PORT, airflow.API_PORT, OWN_LOGIN,
        "Airflow's auth manager has its own login",
    )]


_HOSTS = {
    "mlflow": _mlflow, "grafana": _grafana, "airflow": _airflow, "temporal": _temporal, "models": _models,
    "prometheus": _prometheus, "alertmanager": _alertmanager,
}


def facts(config: StackConfig) -> ComponentFacts:
    """The gateway runs in NAMESPACE; the world reaches its proxies on PROXY_PORTS, and the proxies (only they) reach
    each published service's pods on their port."""
    return ComponentFacts(
        "front-door",
        namespaces=(NamespaceFact(NAMESPACE, GATEWAY_POD_SECURITY),),
        flows=(
            Flow("front-door-public", NAMESPACE, tuple(PROXY_PORTS.values()), (ANYWHERE,), pods=PROXY_LABELS),
            # One flow per host: its routes share a backend namespace and port (MLflow's UI and API, every model).
            *{
                route.host: Flow(f"front-door-{route.host}", route.namespace, (route.target_port,), (NAMESPACE,), source_pods=PROXY_LABELS)
                for route in routes(config)
            }.values(),
        ),
    )


def fqdn(host: str, domain: str) -> str:
    return f"{host}.{domain}"


@dataclass(frozen=True)
class Oidc:
    """The single sign-on provider the gateway sends browsers to."""

    issuer: str
    """Issuer URL (discovery at `<issuer>/.well-known/openid-configuration`)."""
    client_id: str
    """Client id at the provider."""
    client_secret: pulumi.Input[str]
    """The client's secret (a Pulumi secret), delivered to each namespace with an OIDC route as OIDC_SECRET."""
    authorization_url: str | None = None
    """The provider's authorization endpoint; None: the gateway reads it from the discovery document."""
    token_url: str | None = None
    """The provider's token endpoint; None: from the discovery document."""


@dataclass(frozen=True)
class FrontDoorArgs:
    """What a FrontDoor needs; built by the composition from the plan."""

    namespace: pulumi.Input[str]
    """Namespace of Envoy Gateway, its proxies, the Gateway and the certificates."""
    namespaces: Mapping[str, pulumi.Input[str]]
    """Namespace name by role, for the routes (each in its backend's namespace)."""
    namespace_names: Mapping[str, str]
    """The same names as plain strings (listener selectors name the one namespace each host's routes come from)."""
    config: FrontDoorConfig
    """Domain, issuer, proxy Service type and replicas."""
    routes: tuple[Route, ...]
    """What to publish, and how each is signed in to."""
    oidc: Oidc
    """The single sign-on provider."""
    cert_manager: pulumi.Resource | None = None
    """What installs cert-manager (its CRDs and webhook): Issuers and Certificates are declared after it."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where the OIDC client secret and the model API key are kept."""


class FrontDoor(pulumi.ComponentResource):
    """Envoy Gateway, one Gateway with an HTTPS listener per host, an HTTPRoute per published service, certificates
    from cert-manager and sign-in policies."""

    ready: pulumi.Resource
    """The Envoy Gateway release (the Gateway API and Envoy Gateway CRDs)."""
    urls: pulumi.Output[dict]
    """`https://<host>.<domain>` by host."""
    model_keys_secret: pulumi.Output[str] | None
    """With model routes: the Secret (serving namespace) holding the API key callers send as `x-api-key`."""

    def __init__(self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:front_door:FrontDoor", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        door = args.config
        domain = door.domain or ""
        hosts = list(dict.fromkeys(route.host for route in args.routes))
        self.ready = kube.helm_release(
            f"{name}-envoy-gateway", CHARTS["gateway-helm"], release_name=RELEASE, namespace=args.namespace,
            values=chart_values(), opts=child,
        )
        after_crds = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.ready]))
        after_cert_manager = pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[args.cert_manager] if args.cert_manager else [])
        )
        namespace = pulumi.Output.from_input(args.namespace)

        proxy = _custom(f"{name}-proxy", "gateway.envoyproxy.io/v1alpha1", "EnvoyProxy", "proxy", args.namespace,
                        proxy_spec(door), after_crds)
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-class",
            api_version="gateway.networking.k8s.io/v1",
            kind="GatewayClass",
            # Cluster-scoped: named after the gateway's namespace, so two platforms on one cluster do not collide.
            metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=kube.labels("front-door", "gateway")),
            spec={
                "controllerName": CONTROLLER,
                "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": "proxy", "namespace": namespace},
            },
            opts=pulumi.ResourceOptions.merge(after_crds, pulumi.ResourceOptions(depends_on=[self.ready, proxy])),
        )
        issuer = _issuer(name, args, namespace, after_cert_manager)
        certificates = [
            _custom(
                f"{name}-{host}-certificate", "cert-manager.io/v1", "Certificate", f"{host}-tls", args.namespace,
                {
                    "secretName": f"{host}-tls",
                    "dnsNames": [fqdn(host, domain)],
                    "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                },
                after_cert_manager,
            )
            for host in hosts
        ]
        gateway = _custom(
            f"{name}-gateway", "gateway.networking.k8s.io/v1", "Gateway", GATEWAY, args.namespace,
            gateway_spec(namespace, hosts, domain, {r.host: args.namespace_names[r.namespace] for r in args.routes}),
            pulumi.ResourceOptions.merge(after_crds, pulumi.ResourceOptions(depends_on=[self.ready, gateway_class, *certificates])),
        )
        after_gateway = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.ready, gateway]))
        _custom(f"{name}-redirect", "gateway.networking.k8s.io/v1", "HTTPRoute", "https-redirect", args.namespace,
                redirect_spec(namespace), after_gateway)
        http_routes = {
            route.name: _custom(
                f"{name}-{route.name}-route", "gateway.networking.k8s.io/v1", "HTTPRoute", route.name,
                args.namespaces[route.namespace], route_spec(route, namespace, domain), after_gateway,
            )
            for route in args.routes
        }
        self._sign_in(name, args, http_routes, after_gateway)
        self.urls = pulumi.Output.from_input({host: f"https://{fqdn(host, domain)}" for host in hosts})
        self.register_outputs({"urls": self.urls, "model_keys_secret": self.model_keys_secret})

    def _sign_in(self, name: str, args: FrontDoorArgs, http_routes: dict, opts: pulumi.ResourceOptions) -> None:
        """A SecurityPolicy per OIDC route (with the client secret in its namespace), and one API-key policy over the
        model routes."""
        oidc_routes = [route for route in args.routes if route.auth == OIDC]
        secrets = {}
        for role in dict.fromkeys(route.namespace for route in oidc_routes):
            secrets[role] = args.secrets.secret(
                f"{name}-{role}-oidc",
                name=OIDC_SECRET,
                namespace=args.namespaces[role],
                labels=kube.labels("front-door", "sso"),
                data={"client-secret": args.oidc.client_secret},
                opts=opts,
            )
        for route in oidc_routes:
            _custom(
                f"{name}-{route.name}-sso", "gateway.envoyproxy.io/v1alpha1", "SecurityPolicy", f"{route.name}-sso",
                args.namespaces[route.namespace], oidc_policy_spec(route, args.oidc),
                pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[http_routes[route.name], secrets[route.namespace].resource])),
            )
        keyed = [route for route in args.routes if route.auth == API_KEY]
        self.model_keys_secret = None
        if keyed:
            key = random.RandomPassword(f"{name}-model-api-key", length=40, special=False, opts=pulumi.ResourceOptions(parent=self))
            stored = args.secrets.secret(
                f"{name}-model-keys", name=MODEL_KEYS_SECRET, namespace=args.namespaces[model_serving.NAMESPACE],
                labels=kube.labels("front-door", "api-key"), data={"platform": key.result}, opts=opts,
            )
            self.model_keys_secret = stored.name
            _custom(
                f"{name}-models-api-key", "gateway.envoyproxy.io/v1alpha1", "SecurityPolicy", "models-api-key",
                args.namespaces[model_serving.NAMESPACE], api_key_policy_spec(keyed),
                pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[stored.resource, *(http_routes[r.name] for r in keyed)])),
            )


def _custom(resource: str, api_version: str, kind: str, name: pulumi.Input[str], namespace: pulumi.Input[str] | None,
            spec: dict, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        resource,
        api_version=api_version,
        kind=kind,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=kube.labels("front-door", kind.lower())),
        spec=spec,
        opts=opts,
    )


def _issuer(name: str, args: FrontDoorArgs, namespace: pulumi.Output[str], opts: pulumi.ResourceOptions) -> pulumi.Input[str]:
    """The ClusterIssuer the certificates name: the existing one, or one created here (ACME or self-signed)."""
    issuer = args.config.issuer
    if issuer.existing_issuer:
        return issuer.existing_issuer
    issuer_name = namespace.apply(lambda ns: f"{ns}-issuer")
    if issuer.acme:
        spec = {"acme": {
            "email": issuer.acme.email,
            "server": issuer.acme.server,
            "privateKeySecretRef": {"name": issuer_name.apply(lambda n: f"{n}-account")},
            # HTTP-01 answered through our own Gateway's HTTP listener (cert-manager needs its Gateway API support on).
            "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY, "namespace": namespace, "sectionName": "http"}
            ]}}}],
        }}
    else:
        spec = {"selfSigned": {}}
    created = _custom(f"{name}-issuer", "cert-manager.io/v1", "ClusterIssuer", issuer_name, None, spec, opts)
    return created.metadata["name"]


def chart_values() -> dict:
    certgen = SMALL.as_k8s()
    return {
        "global": {"images": {"envoyProxy": {"image": IMAGES["envoy"]}}},
        # Zone labels for topology-aware routing come from a mutating webhook the API server would have to reach;
        # one gateway with a few replicas does not need it.
        "topologyInjector": {"enabled": False},
        "certgen": {"job": {"resources": certgen}},
        "deployment": {"envoyGateway": {"resources": CONTROLLER_RESOURCES.as_k8s()}},
    }


def proxy_spec(door: FrontDoorConfig) -> dict:
    return {"provider": {"type": "Kubernetes", "kubernetes": {
        "envoyDeployment": {
            "replicas": door.replicas,
            "container": {"image": IMAGES["envoy"], "resources": PROXY_RESOURCES.as_k8s()},
        },
        # A fixed name, so README's `kubectl port-forward svc/front-door` and DNS records can rely on it.
        "envoyService": {"name": GATEWAY, "type": door.service_type},
    }}}


def gateway_spec(namespace: pulumi.Input[str], hosts: list[str], domain: str, route_namespaces: Mapping[str, str]) -> dict:
    """Port 80 for the HTTPS redirect and ACME challenges (routes of the gateway's own namespace only); one HTTPS
    listener per host, terminating its certificate, admitting routes from that host's backend namespace only."""
    listeners = [{"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Same"}}}]
    listeners += [
        {
            "name": f"https-{host}",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": fqdn(host, domain),
            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": f"{host}-tls"}]},
            "allowedRoutes": {
                "kinds": [{"kind": "HTTPRoute"}],
                "namespaces": {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": route_namespaces[host]}}},
            },
        }
        for host in hosts
    ]
    return {"gatewayClassName": namespace, "listeners": listeners}


def _parent(namespace: pulumi.Input[str], section: str) -> dict:
    return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY, "namespace": namespace, "sectionName": section}


def redirect_spec(namespace: pulumi.Input[str]) -> dict:
    return {
        "parentRefs": [_parent(namespace, "http")],
        "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
    }


def route_spec(route: Route, namespace: pulumi.Input[str], domain: str) -> dict:
    rule: dict = {
        "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
        "backendRefs": [{"kind": "Service", "name": route.service, "port": route.port}],
    }
    if route.strip_prefix:
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    return {"parentRefs": [_parent(namespace, f"https-{route.host}")], "hostnames": [fqdn(route.host, domain)], "rules": [rule]}


def oidc_policy_spec(route: Route, oidc: Oidc) -> dict:
    return {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route.name}],
        "oidc": {
            "provider": {
                "issuer": oidc.issuer,
                # Given, the endpoints spare the controller a discovery fetch (and a provider unreachable at deploy).
                **({"authorizationEndpoint": oidc.authorization_url} if oidc.authorization_url else {}),
                **({"tokenEndpoint": oidc.token_url} if oidc.token_url else {}),
            },
            "clientID": oidc.client_id,
            "clientSecret": {"name": OIDC_SECRET},
            # The callback is https://<host>/oauth2/callback (Envoy Gateway's default): register it at the provider.
            "logoutPath": "/oauth2/logout",
            "scopes": ["openid", "email", "profile"],
        },
    }


def api_key_policy_spec(keyed: list[Route]) -> dict:
    return {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route.name} for route in keyed],
        "apiKeyAuth": {"credentialRefs": [{"name": MODEL_KEYS_SECRET}], "extractFrom": [{"headers": [API_KEY_HEADER]}]},
    }
