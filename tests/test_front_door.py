"""FrontDoor: one Gateway publishing each UI on `<host>.<domain>`, its certificates, the HTTPS redirect, and how every
route is signed in to. Prod from its stack file; dev with `frontDoor.enabled` on Kind (`*.localtest.me`, self-signed).

The route census is the guard: every HTTPRoute is behind a SecurityPolicy (OIDC or an API key) or is listed below
with the login of its own that protects it; a new route without either fails here."""

from __future__ import annotations

import functools
import re

import pytest

from components.cert_manager import GATEWAY_API_CONFIG
from components.config import ConfigError, parse_stack_config
from components.front_door import API_KEY_HEADER, MODEL_KEYS_SECRET, OIDC_SECRET, PROXY_LABELS
from components.observability import GRAFANA_OIDC_SECRET
from components.versions import CHARTS
from tools.charts import render_stack_charts
from tools.render import Rendering, render_stack

DEV_FRONT_DOOR = {
    "enabled": True,
    "domain": "localtest.me",
    "issuer": {"selfSigned": True},
    "serviceType": "ClusterIP",
    "replicas": 1,
    "oidc": {
        "issuer": "https://dex.localtest.me",
        "clientId": "mlops-platform",
        "authorizationUrl": "https://dex.localtest.me/auth",
        "tokenUrl": "https://dex.localtest.me/token",
        "userinfoUrl": "https://dex.localtest.me/userinfo",
    },
}
OWN_LOGIN = {
    "grafana": "Grafana's generic OAuth against the same provider (checked below)",
    "mlflow-api": "MLflow's basic-auth app (prod runs --app-name basic-auth, checked below)",
    "airflow": "Airflow's auth manager",
    "https-redirect": "answers every request with a redirect to HTTPS, reaching no backend",
}
"""Routes with no gateway policy, each with the login that protects it."""
# Grafana's documented [auth.generic_oauth] settings (grafana.com/docs/grafana/latest/setup-grafana/configure-access/
# configure-authentication/generic-oauth/, "Configuration options"), and [server] root_url.
GRAFANA_GENERIC_OAUTH_KEYS = {
    "enabled", "name", "icon", "client_id", "client_secret", "client_authentication", "scopes", "empty_scopes",
    "auth_url", "token_url", "api_url", "signout_redirect_url", "allowed_domains", "allowed_groups",
    "allowed_organizations", "allow_sign_up", "auto_login", "use_pkce", "use_refresh_token", "auth_style",
    "login_attribute_path", "name_attribute_path", "email_attribute_path", "email_attribute_name", "id_token_attribute_name",
    "role_attribute_path", "role_attribute_strict", "allow_assign_grafana_admin", "skip_org_role_sync", "org_attribute_path",
    "org_mapping", "groups_attribute_path", "team_ids", "team_ids_attribute_path", "teams_url", "tls_skip_verify_insecure",
    "tls_client_cert", "tls_client_key", "tls_client_ca",
}


@functools.cache
def dev_with_front_door() -> Rendering:
    return render_stack("dev", overrides={"mlops-platform:frontDoor": DEV_FRONT_DOOR})


@pytest.fixture(scope="module")
def door_dev() -> Rendering:
    return dev_with_front_door()


@pytest.fixture(scope="module", params=["prod", "dev-front-door"])
def published(request, prod) -> Rendering:
    return prod if request.param == "prod" else dev_with_front_door()


PROD_HOSTS = ("mlflow", "grafana", "airflow", "temporal", "prometheus", "alertmanager")
"""Hosts prod publishes: every UI of its stack (it serves no model yet)."""


def custom(rendering: Rendering, kind: str) -> list[dict]:
    return [r.manifest() for r in rendering.find_all(kind=kind)]


def gateway(rendering: Rendering) -> dict:
    (found,) = custom(rendering, "Gateway")
    return found


def policies_of(rendering: Rendering) -> dict[tuple[str, str], dict]:
    """(namespace, route name) -> the spec of the SecurityPolicy that targets it."""
    found = {}
    for policy in custom(rendering, "SecurityPolicy"):
        for ref in policy["spec"]["targetRefs"]:
            assert ref["kind"] == "HTTPRoute"
            assert (policy["metadata"]["namespace"], ref["name"]) not in found, "two policies on one route"
            found[policy["metadata"]["namespace"], ref["name"]] = policy["spec"]
    return found


# --- The Gateway, its listeners, certificates and the redirect --------------------------------------------------


def test_prod_publishes_each_ui_of_the_stack_on_its_own_https_listener(prod):
    spec = gateway(prod)["spec"]
    listeners = {listener["name"]: listener for listener in spec["listeners"]}
    assert set(listeners) == {"http", *(f"https-{h}" for h in PROD_HOSTS)}
    assert listeners["http"]["port"] == 80 and listeners["http"]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    for host in PROD_HOSTS:
        listener = listeners[f"https-{host}"]
        assert (listener["protocol"], listener["port"], listener["hostname"]) == ("HTTPS", 443, f"{host}.mlops.example.com")
        assert listener["tls"] == {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": f"{host}-tls"}]}
    # Each listener admits routes from its backend's namespace only, not any namespace of the cluster.
    assert listeners["https-mlflow"]["allowedRoutes"]["namespaces"] == {
        "from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "mlops-mlflow"}}
    }
    (gateway_class,) = custom(prod, "GatewayClass")
    assert spec["gatewayClassName"] == gateway_class["metadata"]["name"] == "mlops-gateway"
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"


def test_prod_gets_a_certificate_per_host_from_an_acme_issuer_answering_through_the_gateway(prod):
    # The gateway's certificates (Vault's own chain lives in the vault namespace, tests/test_vault_tls.py).
    certificates = {c["spec"]["secretName"]: c["spec"] for c in custom(prod, "Certificate") if c["metadata"]["namespace"] == "mlops-gateway"}
    assert set(certificates) == {f"{h}-tls" for h in PROD_HOSTS}
    assert certificates["grafana-tls"]["dnsNames"] == ["grafana.mlops.example.com"]
    (issuer,) = custom(prod, "ClusterIssuer")
    assert {c["issuerRef"]["name"] for c in certificates.values()} == {issuer["metadata"]["name"]}
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["email"] == "platform-team@example.com"
    (solver,) = acme["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "front-door", "namespace": "mlops-gateway", "sectionName": "http",
    }]
    cert_manager = prod.find(type="kubernetes:helm.sh/v4:Chart", name="cert-manager-chart").urn
    for certificate in [*prod.find_all(kind="Certificate"), *prod.find_all(kind="ClusterIssuer")]:
        assert cert_manager in waits_for(prod, certificate.urn), f"{certificate.name} must wait for cert-manager"


def waits_for(rendering: Rendering, urn: str) -> set[str]:
    """Every resource `urn` depends on, directly or through others."""
    seen: set[str] = set()
    todo = [urn]
    while todo:
        found = rendering.by_urn(todo.pop())
        for dependency in found.dependencies if found else ():
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_cert_manager_answers_acme_challenges_through_the_gateway(prod):
    (values,) = [r.inputs["values"] for r in prod.resources if r.type.startswith("kubernetes:helm.sh/") and r.inputs["chart"] == "cert-manager"]
    assert values["config"] == GATEWAY_API_CONFIG


def test_http_is_redirected_to_https(published):
    redirect = next(r for r in custom(published, "HTTPRoute") if r["metadata"]["name"] == "https-redirect")
    assert [p["sectionName"] for p in redirect["spec"]["parentRefs"]] == ["http"]
    (rule,) = redirect["spec"]["rules"]
    assert rule == {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}


def test_no_ingress_of_the_retired_nginx_controller_remains(renderings, door_dev):
    for rendering in (*renderings.values(), door_dev):
        assert not rendering.find_all(kind="Ingress")
        assert not rendering.find_all(kind="IngressClass")
        for flow in rendering.find_all(kind="NetworkPolicy"):
            assert "ingress-nginx" not in str(flow.inputs)


def test_the_proxies_run_the_pinned_envoy_and_the_chart_is_pinned(prod):
    release = prod.find(type="kubernetes:helm.sh/v3:Release", name="front-door-envoy-gateway").inputs
    chart = CHARTS["gateway-helm"]
    assert (release["chart"], release["version"]) == ("oci://docker.io/envoyproxy/gateway-helm", "v1.9.0") == (chart.reference, chart.version)
    assert "repositoryOpts" not in release
    (proxy,) = custom(prod, "EnvoyProxy")
    kubernetes = proxy["spec"]["provider"]["kubernetes"]
    assert kubernetes["envoyDeployment"]["container"]["image"] == release["values"]["global"]["images"]["envoyProxy"]["image"]
    assert kubernetes["envoyService"] == {"name": "front-door", "type": "LoadBalancer"}
    assert kubernetes["envoyDeployment"]["replicas"] == 2


# --- Routes: backends exist, and nothing is published without a login -------------------------------------------


@functools.cache
def chart_services(stack: str) -> dict[tuple[str, str], set[int]] | None:
    """Services the charts render (Grafana, Prometheus, Alertmanager, the Temporal UI); None when a chart is missing."""
    rendering = render_stack(stack) if stack == "prod" else dev_with_front_door()
    charts = render_stack_charts(rendering)
    if charts.missing or charts.failed:
        return None
    return {
        (obj["metadata"]["namespace"], obj["metadata"]["name"]): {p["port"] for p in obj["spec"]["ports"]}
        for _, obj in charts.objects() if obj["kind"] == "Service"
    }


@pytest.mark.parametrize("stack", ["prod", "dev-front-door"])
def test_every_route_goes_to_a_service_and_port_that_exist(stack, prod):
    rendering = prod if stack == "prod" else dev_with_front_door()
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): {p["port"] for p in s["spec"]["ports"]}
        for s in (r.manifest() for r in rendering.find_all(kind="Service"))
    }
    from_charts = chart_services("prod" if stack == "prod" else "dev")
    if from_charts is None:
        pytest.skip("a chart is not in the chart cache (python -m tools.charts pull): chart Services cannot be checked")
    services.update(from_charts)
    routes = [r for r in custom(rendering, "HTTPRoute") if r["metadata"]["name"] != "https-redirect"]
    assert len(routes) >= 5
    for route in routes:
        for rule in route["spec"]["rules"]:
            for backend in rule["backendRefs"]:
                key = (route["metadata"]["namespace"], backend["name"])
                assert key in services, f"{route['metadata']['name']} -> {key}: no such Service"
                assert backend["port"] in services[key], f"{route['metadata']['name']} -> {key}:{backend['port']}"


def test_every_route_is_behind_a_login(published):
    policies = policies_of(published)
    unprotected = {}
    for route in custom(published, "HTTPRoute"):
        key = (route["metadata"]["namespace"], route["metadata"]["name"])
        policy = policies.get(key, {})
        if not (policy.get("oidc") or policy.get("apiKeyAuth")) and key[1] not in OWN_LOGIN:
            unprotected[key] = route["spec"]["hostnames"]
    assert unprotected == {}


def test_the_uis_without_a_login_of_their_own_are_behind_gateway_oidc(published):
    policies = policies_of(published)
    by_name = {name: spec for (_, name), spec in policies.items()}
    for ui in ("temporal", "prometheus", "alertmanager"):
        if ui not in {r["metadata"]["name"] for r in custom(published, "HTTPRoute")}:
            continue
        oidc = by_name[ui]["oidc"]
        assert oidc["provider"]["issuer"].startswith("https://")
        assert oidc["clientSecret"] == {"name": OIDC_SECRET}
    # A Secret (Kubernetes store) or an ExternalSecret creating it from Vault (prod).
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]) for kind in ("Secret", "ExternalSecret") for s in custom(published, kind)}
    for namespace, _ in (key for key, spec in policies.items() if "oidc" in spec):
        assert (namespace, OIDC_SECRET) in secrets, f"the OIDC client secret is missing in {namespace}"


def test_mlflow_ui_goes_through_sso_and_its_api_keeps_basic_auth_for_machines(prod):
    routes = {r["metadata"]["name"]: r["spec"] for r in custom(prod, "HTTPRoute")}
    assert [m["path"] for m in routes["mlflow"]["rules"][0]["matches"]] == [{"type": "PathPrefix", "value": "/"}]
    assert [m["path"] for m in routes["mlflow-api"]["rules"][0]["matches"]] == [{"type": "PathPrefix", "value": "/api/"}]
    policies = {name: spec for (_, name), spec in policies_of(prod).items()}
    assert "oidc" in policies["mlflow"] and "mlflow-api" not in policies
    # The API route skips the gateway's sign-in only because MLflow's own basic auth guards it.
    server = prod.find(kind="Deployment", name="mlflow").manifest()["spec"]["template"]["spec"]["containers"][0]
    assert "--app-name" in server["args"] and "basic-auth" in server["args"]


def test_without_mlflow_auth_the_whole_mlflow_host_is_behind_sso(door_dev):
    routes = [r["metadata"]["name"] for r in custom(door_dev, "HTTPRoute") if r["metadata"]["namespace"] == "mlops-mlflow"]
    assert routes == ["mlflow"]
    assert "oidc" in policies_of(door_dev)["mlops-mlflow", "mlflow"]


def test_model_endpoints_need_the_generated_api_key(door_dev):
    routes = {r["metadata"]["name"]: r["spec"] for r in custom(door_dev, "HTTPRoute")}
    model = routes["model-example"]
    assert model["hostnames"] == ["models.localtest.me"]
    (rule,) = model["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/example/"}}]
    assert rule["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    policy = policies_of(door_dev)["mlops-serving", "model-example"]
    assert policy["apiKeyAuth"] == {"credentialRefs": [{"name": MODEL_KEYS_SECRET}], "extractFrom": [{"headers": [API_KEY_HEADER]}]}
    key = door_dev.find(type="random:index/randomPassword:RandomPassword", name="front-door-model-api-key").inputs
    assert key["length"] >= 32
    secret = next(s for s in custom(door_dev, "Secret") if s["metadata"]["name"] == MODEL_KEYS_SECRET)
    assert secret["metadata"]["namespace"] == "mlops-serving" and set(secret.get("stringData") or secret.get("data")) == {"platform"}


def test_only_the_gateway_proxies_reach_published_services(published):
    policies = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in (r.manifest() for r in published.find_all(kind="NetworkPolicy"))}
    door = {key: spec for key, spec in policies.items() if key[1].startswith("allow-front-door-") and key[1] != "allow-front-door-public"}
    assert door
    for spec in door.values():
        (rule,) = spec["ingress"]
        assert rule["from"] == [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlops-gateway"}},
            "podSelector": {"matchLabels": PROXY_LABELS},
        }]
    public = policies["mlops-gateway", "allow-front-door-public"]
    assert public["podSelector"] == {"matchLabels": PROXY_LABELS}
    assert {p["port"] for p in public["ingress"][0]["ports"]} == {10080, 10443}


# --- Dev on Kind ------------------------------------------------------------------------------------------------


def test_dev_on_kind_uses_localtest_me_a_self_signed_issuer_and_keeps_its_node_ports(door_dev, dev):
    listeners = {listener["name"]: listener.get("hostname") for listener in gateway(door_dev)["spec"]["listeners"]}
    assert listeners["https-mlflow"] == "mlflow.localtest.me" and listeners["https-models"] == "models.localtest.me"
    (issuer,) = custom(door_dev, "ClusterIssuer")
    assert issuer["spec"] == {"selfSigned": {}}
    (proxy,) = custom(door_dev, "EnvoyProxy")
    assert proxy["spec"]["provider"]["kubernetes"]["envoyService"]["type"] == "ClusterIP"
    node_ports = lambda r: sorted(  # noqa: E731
        (s["metadata"]["name"], p.get("nodePort")) for s in (x.manifest() for x in r.find_all(kind="Service")) for p in s["spec"]["ports"] if p.get("nodePort")
    )
    assert node_ports(door_dev) == node_ports(dev)
    # cert-manager comes with it (the front door needs it), but dev's PostgreSQL does not start archiving WAL.
    assert door_dev.find_all(type="kubernetes:helm.sh/v4:Chart", name="cert-manager-chart")
    cluster = door_dev.find(kind="Cluster").manifest()
    assert not cluster["spec"].get("plugins")


def test_dev_without_the_front_door_has_none_of_it(dev):
    assert not dev.find_all(kind="Gateway") and not dev.find_all(kind="HTTPRoute")
    assert "mlops-gateway" not in {n.manifest()["metadata"]["name"] for n in dev.find_all(kind="Namespace")}


# --- Grafana's own single sign-on ---------------------------------------------------------------------------------


def grafana_values(rendering: Rendering) -> dict:
    return rendering.find(type="kubernetes:helm.sh/v3:Release", name="observability-metrics").inputs["values"]["grafana"]


def test_grafana_signs_in_with_the_same_provider_using_only_documented_settings(prod):
    grafana = grafana_values(prod)
    ini = grafana["grafana.ini"]
    assert ini["server"]["root_url"] == "https://grafana.mlops.example.com"
    oauth = ini["auth.generic_oauth"]
    assert set(oauth) <= GRAFANA_GENERIC_OAUTH_KEYS, set(oauth) - GRAFANA_GENERIC_OAUTH_KEYS
    assert oauth["enabled"] is True and oauth["client_id"] == "mlops-platform"
    assert (oauth["auth_url"], oauth["token_url"], oauth["api_url"]) == (
        "https://login.example.com/auth", "https://login.example.com/token", "https://login.example.com/userinfo"
    )
    assert "openid" in oauth["scopes"].split()
    # The secret never sits in values: Grafana reads GF_<SECTION>_<KEY> (section dots as '_') from the environment.
    assert "client_secret" not in oauth
    env = "GF_" + re.sub(r"[.-]", "_", "auth.generic_oauth").upper() + "_" + "client_secret".upper()
    assert grafana["envValueFrom"] == {env: {"secretKeyRef": {"name": GRAFANA_OIDC_SECRET, "key": "client-secret"}}}
    external = [s for s in custom(prod, "ExternalSecret") if s["metadata"]["name"] == GRAFANA_OIDC_SECRET]
    assert [s["metadata"]["namespace"] for s in external] == ["mlops-observability"]


def test_grafana_without_the_front_door_keeps_its_values(dev):
    assert "grafana.ini" not in grafana_values(dev) and "envValueFrom" not in grafana_values(dev)


# --- Config -------------------------------------------------------------------------------------------------------


def problems(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("dev", raw)
    return str(caught.value)


def test_an_enabled_front_door_says_everything_it_lacks():
    message = problems({"frontDoor": {"enabled": True}})
    for key in ("frontDoor.domain", "frontDoor.issuer", "frontDoor.oidc"):
        assert f"mlops-platform:{key} = null" in message


def test_an_enabled_front_door_needs_the_client_secret_and_says_how_to_set_it():
    message = problems({"frontDoor": DEV_FRONT_DOOR})
    assert "pulumi config set --secret mlops-platform:oidcClientSecret" in message


def test_hosts_of_absent_components_are_refused():
    door = {**DEV_FRONT_DOOR, "hosts": ["models", "prometheus"]}
    message = problems({"frontDoor": door, "oidcClientSecret": "s"})
    assert 'frontDoor.hosts = "models": models is published only with a model in serving.models' in message
    assert 'frontDoor.hosts = "prometheus": prometheus is published only with observability.enabled: true' in message


def test_grafana_needs_the_providers_endpoints():
    oidc = {"issuer": "https://login.example.com", "clientId": "c"}
    message = problems({"frontDoor": {**DEV_FRONT_DOOR, "oidc": oidc}, "observability": {"enabled": True}, "oidcClientSecret": "s"})
    assert "Grafana's generic OAuth needs authorizationUrl, tokenUrl and userinfoUrl" in message
    parse_stack_config("dev", {"frontDoor": {**DEV_FRONT_DOOR, "oidc": oidc, "hosts": ["mlflow"]}, "observability": {"enabled": True}, "oidcClientSecret": "s"})


def test_one_issuer_exactly():
    message = problems({"frontDoor": {**DEV_FRONT_DOOR, "issuer": {"selfSigned": True, "existingIssuer": "corp"}}, "oidcClientSecret": "s"})
    assert "set exactly one of acme, existingIssuer, selfSigned" in message
