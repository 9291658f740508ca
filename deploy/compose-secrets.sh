#!/usr/bin/env bash
# Writes deploy/.env for compose.yaml (git-ignored): the gateway's Ed25519 identity
# key pair, the root secrets of auth-service, spaces-service and events-service, and
# a password per PostgreSQL. Compose reads .env beside the compose file and
# interpolates these into the environment. An existing .env is kept; delete it to
# start over (the databases' volumes keep their old passwords:
# `docker compose -f deploy/compose.yaml down -v` drops them). An .env written
# before events-service existed lacks its two lines: add them, or start over.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -s .env ]]; then
  echo "deploy/.env exists; keeping it"
  exit 0
fi
umask 077
key=$(openssl genpkey -algorithm ed25519)
public=$(openssl pkey -pubout <<<"$key")
# Double-quoted .env values turn \n into newlines.
pem_line() { awk 'BEGIN { ORS = "\\n" } { print }' | sed 's/\\n$//'; }
{
  echo "SPACEPORT_GATEWAY_SIGNING_KEY=\"$(pem_line <<<"$key")\""
  echo "SPACEPORT_GATEWAY_PUBLIC_KEY=\"$(pem_line <<<"$public")\""
  echo "SPACEPORT_AUTH_SECRET_KEY=$(openssl rand -base64 32)"
  echo "SPACEPORT_SPACES_SECRET_KEY=$(openssl rand -base64 32)"
  echo "SPACEPORT_EVENTS_SECRET_KEY=$(openssl rand -base64 32)"
  for db in AUTH BOOKING SPACES EVENTS; do
    echo "SPACEPORT_${db}_DB_PASSWORD=$(openssl rand -hex 24)"
  done
} >.env.tmp
mv .env.tmp .env
echo "wrote deploy/.env"
