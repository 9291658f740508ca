#!/usr/bin/env bash
# Writes the dev overlay's Secret sources under secrets/ (git-ignored): the
# gateway's Ed25519 identity key pair, the root secrets of auth-service,
# spaces-service and events-service, a random password per PostgreSQL, and
# MinIO's credentials (also spaces-service's, to reach its bucket).
# Existing files are kept, so re-running changes nothing (and adds what a newer
# part needs); delete secrets/ to rotate everything. Needs openssl.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets

if [[ ! -s secrets/gateway-identity.pem ]]; then
  openssl genpkey -algorithm ed25519 -out secrets/gateway-identity.pem
  rm -f secrets/gateway-identity.pub.pem
fi
if [[ ! -s secrets/gateway-identity.pub.pem ]]; then
  openssl pkey -in secrets/gateway-identity.pem -pubout -out secrets/gateway-identity.pub.pem
fi
for part in auth spaces events; do
  if [[ ! -s "secrets/${part}-secret.key" ]]; then
    openssl rand -base64 32 | tr -d '\n' > "secrets/${part}-secret.key"
  fi
done

for db in auth booking spaces events; do
  if [[ ! -s "secrets/${db}-postgres.env" || ! -s "secrets/${db}-service.env" ]]; then
    password=$(openssl rand -hex 24)
    printf 'POSTGRES_USER=%s\nPOSTGRES_PASSWORD=%s\nPOSTGRES_DB=%s\n' "$db" "$password" "$db" \
      > "secrets/${db}-postgres.env"
    printf 'database-url=postgres://%s:%s@%s-postgres:5432/%s\n' "$db" "$password" "$db" "$db" \
      > "secrets/${db}-service.env"
  fi
done
# MinIO's root user is spaces-service's S3 identity, as each PostgreSQL's user is
# its service's (and minio-bucket's, which creates the bucket).
if [[ ! -s secrets/minio.env || ! -s secrets/spaces-storage.env ]]; then
  password=$(openssl rand -hex 24)
  printf 'MINIO_ROOT_USER=spaces\nMINIO_ROOT_PASSWORD=%s\n' "$password" > secrets/minio.env
  printf 'storage-access-key-id=spaces\nstorage-secret-access-key=%s\n' "$password" \
    > secrets/spaces-storage.env
fi
echo "dev secrets are in $(pwd)/secrets"
