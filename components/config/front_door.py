"""`mlops-platform:frontDoor`: the one way in from outside, a Gateway API gateway with TLS and single sign-on."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from components.config.base import Block, null_as_empty
from components.config.formats import DnsName, Flag, Text, matching, one_of, unique_list, whole
from components.config.problems import Problem, reject

FRONT_DOOR_HOSTS = ("mlflow", "grafana", "airflow", "temporal", "models", "prometheus", "alertmanager")
"""Every host the gateway can publish, `<host>.<domain>`; each only when its component is in the stack."""
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

Host = one_of(*FRONT_DOOR_HOSTS)
HttpsUrl = matching(r"^https://[A-Za-z0-9.-]+(:\d+)?(/.*)?$", "expected an https URL such as https://login.example.com")
Email = matching(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "expected an e-mail address such as ops@example.com")


class AcmeConfig(Block):
    """An ACME ClusterIssuer the platform creates (Let's Encrypt by default), answering HTTP-01 through the gateway."""

    email: Email = Field(description="Account e-mail the ACME server sends expiry notices to (Let's Encrypt refuses example.com).")
    server: HttpsUrl = Field(
        LETS_ENCRYPT,
        description="ACME directory URL; Let's Encrypt's staging is https://acme-staging-v02.api.letsencrypt.org/directory.",
    )


_FIELDS = {"acme": "acme", "existingIssuer": "existing_issuer", "selfSigned": "self_signed"}


class IssuerConfig(Block):
    """Where the gateway's certificates come from: exactly one of `acme`, `existingIssuer`, `selfSigned`."""

    acme: Annotated[AcmeConfig | None, BeforeValidator(null_as_empty)] = Field(
        None, description="Create an ACME ClusterIssuer (HTTP-01 answered through the gateway)."
    )
    existing_issuer: Text | None = Field(None, description="Name of a cert-manager ClusterIssuer that already exists.")
    self_signed: Flag = Field(False, description="A self-signed ClusterIssuer (dev on Kind: browsers will warn).")

    @model_validator(mode="after")
    def _exactly_one(self) -> IssuerConfig:
        chosen = [key for key, on in (("acme", self.acme), ("existingIssuer", self.existing_issuer), ("selfSigned", self.self_signed)) if on]
        if len(chosen) != 1:
            key = chosen[-1] if chosen else "acme"
            also = f" (also set: {', '.join(chosen[:-1])})" if len(chosen) > 1 else ""
            reject([Problem(key, getattr(self, _FIELDS[key]), f"set exactly one of acme, existingIssuer, selfSigned{also}")])
        return self


class OidcConfig(Block):
    """The one OpenID Connect provider every UI signs in with."""

    issuer: HttpsUrl = Field(description="Issuer URL; `<issuer>/.well-known/openid-configuration` must answer.")
    client_id: Text = Field(description="Client id registered at the provider (its secret: `pulumi config set --secret oidcClientSecret`).")
    # Grafana's generic OAuth does not read the discovery document: it needs the three endpoints spelled out.
    authorization_url: HttpsUrl | None = Field(None, description="The provider's authorization endpoint (Grafana needs it).")
    token_url: HttpsUrl | None = Field(None, description="The provider's token endpoint (Grafana needs it).")
    userinfo_url: HttpsUrl | None = Field(None, description="The provider's userinfo endpoint (Grafana needs it).")


class FrontDoorConfig(Block):
    """Publishing the platform's UIs and APIs on `<host>.<domain>` through one Gateway (Envoy Gateway)."""

    model_config = ConfigDict(json_schema_extra={"allOf": [{
        "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
        "then": {"required": ["domain", "issuer", "oidc"]},
    }]})

    enabled: Flag = Field(False, description="Install the gateway and publish the stack's UIs on `<host>.<domain>`.")
    domain: DnsName | None = Field(None, description="Parent domain, e.g. mlops.example.com: mlflow.mlops.example.com, ...")
    issuer: Annotated[IssuerConfig | None, BeforeValidator(null_as_empty)] = Field(
        None, description="Where the certificates come from (cert-manager)."
    )
    oidc: OidcConfig | None = Field(None, description="The OpenID Connect provider of single sign-on.")
    hosts: unique_list(Host, "hosts") | None = Field(  # type: ignore[valid-type]
        None,
        description=f"Hosts to publish, of {', '.join(FRONT_DOOR_HOSTS)}; absent: every one whose component is in the stack.",
    )
    service_type: one_of(*SERVICE_TYPES) = Field(  # type: ignore[valid-type]
        "LoadBalancer",
        description="Service type of the gateway's proxies: LoadBalancer (cloud), or ClusterIP and a port-forward (Kind).",
    )
    replicas: whole(1, 10) = Field(2, description="Envoy proxy replicas.")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> FrontDoorConfig:
        if not self.enabled:
            return self
        problems = [
            Problem(key, None, why)
            for key, value, why in (
                ("domain", self.domain, "the gateway publishes <host>.<domain>: set the parent domain, e.g. mlops.example.com"),
                ("issuer", self.issuer, "certificates need an issuer: acme {email}, existingIssuer <name>, or selfSigned: true"),
                ("oidc", self.oidc, "single sign-on needs a provider: oidc {issuer, clientId}"),
            )
            if value is None
        ]
        reject(problems)
        return self

    def published(self, present: tuple[str, ...]) -> tuple[str, ...]:
        """The hosts to publish, of those whose component is `present`."""
        wanted = self.hosts or FRONT_DOOR_HOSTS
        return tuple(host for host in FRONT_DOOR_HOSTS if host in wanted and host in present) if self.enabled else ()
