#!/usr/bin/env bash
# Bring the dev platform up on a local Kind cluster: create the cluster if it is missing, then `pulumi up` the
# dev stack on a local state backend. Safe to re-run: existing data stays on the retained volumes.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=mlops
DATA_DIR="${MLOPS_KIND_DATA:-$PWD/.kind-data}"
STATE_DIR="$PWD/.pulumi-state"

need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "dev-up: '$1' is not installed. Install it first: $2" >&2
  exit 1
}
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need pulumi "https://www.pulumi.com/docs/iac/download-install/"
need python3 "https://www.python.org/downloads/ (3.11 or newer)"
if ! docker info >/dev/null 2>&1; then
  echo "dev-up: docker is installed but its daemon is not reachable; start Docker and re-run." >&2
  exit 1
fi

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  mkdir -p "$DATA_DIR"
  config=$(mktemp)
  trap 'rm -f "$config"' EXIT
  sed "s|__DATA_DIR__|$DATA_DIR|" dev/kind-cluster.yaml >"$config"
  echo "dev-up: creating Kind cluster '$CLUSTER' (volumes kept in $DATA_DIR)"
  kind create cluster --name "$CLUSTER" --config "$config" --wait 120s
fi

# A local state backend; the passphrase that encrypts secrets in it is generated once and kept beside it.
mkdir -p "$STATE_DIR"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$STATE_DIR}"
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s "$STATE_DIR/passphrase" ]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$STATE_DIR/passphrase")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$STATE_DIR/passphrase"
fi

pulumi install
pulumi stack select dev --create
pulumi up --stack dev --yes "$@"
pulumi stack output --stack dev
