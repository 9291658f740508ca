"""Self-test of check_env.py: it must fail on the mistakes it exists to catch.

Run by deploy/check.sh (`python -m unittest deploy/test_check_env.py`); each case
runs check_env.py as a command, as CI does, on a small manifest written here.
"""

import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

CHECK_ENV = Path(__file__).resolve().parent / "check_env.py"

AUTH_SERVER = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: auth-service, namespace: t}
spec:
  template:
    spec:
      containers:
        - name: auth-service
          image: registry.example.com/spaceport/auth-service:1.0
          args: [serve]
          envFrom:
            - configMapRef: {name: auth-config}
          env:
            - {name: AUTH__DATABASE__URL, valueFrom: {secretKeyRef: {name: external, key: database-url}}}
            - {name: AUTH__CACHE__URL, valueFrom: {secretKeyRef: {name: external, key: cache-url}}}
            - {name: AUTH__IDENTITY__GATEWAY_PUBLIC_KEYS, valueFrom: {secretKeyRef: {name: external, key: pk}}}
            - {name: AUTH__SECRET__KEY, valueFrom: {secretKeyRef: {name: external, key: secret-key}}}
            - {name: AUTH__MAIL__URL, value: log}
            - {name: RUST_LOG, value: info}
        - name: sidecar-not-ours
          image: postgres:17
          env:
            - {name: POSTGRES_PASSWORD, value: x}
"""

AUTH_CONFIG = """
apiVersion: v1
kind: ConfigMap
metadata: {name: auth-config, namespace: t}
data:
  AUTH__LOG__FORMAT: json
  AUTH__TOKENS__ISSUER: https://example.com
  AUTH__DATABASE__MIGRATE_ON_START: "false"
"""

AUTH_MIGRATION = """
apiVersion: batch/v1
kind: Job
metadata: {name: auth-service-migrate, namespace: t}
spec:
  template:
    spec:
      containers:
        - name: migrate
          image: spaceport/auth-service
          args: [migrate]
          env:
            - {name: AUTH__DATABASE__URL, value: "postgres://db/auth"}
"""

GATEWAY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: gateway, namespace: t}
spec:
  template:
    spec:
      containers:
        - name: gateway
          image: spaceport/gateway:dev
          env:
            - {name: GATEWAY__IDENTITY__SIGNING_KEY, valueFrom: {secretKeyRef: {name: external, key: k}}}
            - {name: GATEWAY__CACHE__URL, value: "redis://redis:6379"}
            - {name: GATEWAY__UPSTREAMS__AUTH, value: "http://auth-service:8081"}
            - {name: GATEWAY__UPSTREAMS__BOOKING, value: "http://booking-service:8082"}
            - {name: GATEWAY__UPSTREAMS__SPACES, value: "http://spaces-service:8083"}
            - {name: GATEWAY__UPSTREAMS__EVENTS, value: "http://events-service:8084"}
"""

COMPOSE = """
services:
  auth-service:
    image: spaceport/auth-service:dev
    environment:
      AUTH__DATABASE__URL: postgres://auth:${PW}@db/auth
      AUTH__CACHE__URL: redis://redis:6379
      AUTH__IDENTITY__GATEWAY_PUBLIC_KEYS: ${PUB}
      AUTH__SECRET__KEY: ${SECRET}
      AUTH__MAIL__URL: log
      AUTH__TOKENS__ISSUER: http://localhost:8080
  db:
    image: postgres:17
    environment:
      POSTGRES_PASSWORD: x
"""


def docs(*parts: str) -> str:
    return "\n---\n".join(textwrap.dedent(p).strip() for p in parts) + "\n"


class CheckEnvTest(unittest.TestCase):
    def run_check(self, text: str, compose: bool = False) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ("compose.yaml" if compose else "rendered.yaml")
            path.write_text(text)
            args = ["--compose", str(path)] if compose else [str(path)]
            return subprocess.run([sys.executable, str(CHECK_ENV), *args],
                                  capture_output=True, text=True, timeout=60)

    def assert_passes(self, text: str, compose: bool = False) -> None:
        result = self.run_check(text, compose)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def assert_fails(self, text: str, *expected: str, compose: bool = False) -> None:
        result = self.run_check(text, compose)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        for words in expected:
            self.assertIn(words, result.stdout)

    def test_correct_manifests_pass(self):
        self.assert_passes(docs(AUTH_SERVER, AUTH_CONFIG, AUTH_MIGRATION, GATEWAY))

    def test_a_bogus_variable_fails(self):
        bad = AUTH_SERVER.replace("{name: RUST_LOG, value: info}", "{name: AUTH__DATABASE__URLL, value: x}")
        self.assert_fails(docs(bad, AUTH_CONFIG), "AUTH__DATABASE__URLL is not a configuration key of auth-service")

    def test_a_bogus_key_in_a_configmap_fails(self):
        bad = AUTH_CONFIG + "  AUTH__LOG__COLOUR: never\n"
        self.assert_fails(docs(AUTH_SERVER, bad), "AUTH__LOG__COLOUR is not a configuration key")

    def test_another_parts_variable_fails(self):
        bad = AUTH_SERVER.replace("{name: RUST_LOG, value: info}", "{name: BOOKING__CACHE__URL, value: x}")
        self.assert_fails(docs(bad, AUTH_CONFIG), "BOOKING__CACHE__URL is read by booking-service, not by auth-service")

    def test_an_unprefixed_variable_fails(self):
        bad = AUTH_SERVER.replace("{name: RUST_LOG, value: info}", "{name: DATABASE_URL, value: x}")
        self.assert_fails(docs(bad, AUTH_CONFIG), "DATABASE_URL is read by no part")

    def test_the_route_table_is_not_set_by_environment(self):
        bad = GATEWAY + "            - {name: GATEWAY__ROUTES, value: x}\n"
        self.assert_fails(docs(bad), "GATEWAY__ROUTES is not a configuration key of gateway")

    def test_a_missing_required_setting_fails(self):
        bad = AUTH_SERVER.replace("            - {name: AUTH__MAIL__URL, value: log}\n", "")
        self.assert_fails(docs(bad, AUTH_CONFIG), "required setting AUTH__MAIL__URL is missing")

    def test_every_upstream_is_required(self):
        bad = GATEWAY.replace('            - {name: GATEWAY__UPSTREAMS__SPACES, value: "http://spaces-service:8083"}\n', "")
        self.assert_fails(docs(bad), "required setting GATEWAY__UPSTREAMS__SPACES is missing")

    def test_a_migration_needs_the_database(self):
        bad = AUTH_MIGRATION.replace('            - {name: AUTH__DATABASE__URL, value: "postgres://db/auth"}\n', "")
        self.assert_fails(docs(AUTH_SERVER, AUTH_CONFIG, bad), "required setting AUTH__DATABASE__URL is missing")

    def test_servers_must_not_migrate_when_a_job_does(self):
        config = AUTH_CONFIG.replace('  AUTH__DATABASE__MIGRATE_ON_START: "false"\n', "")
        self.assert_fails(docs(AUTH_SERVER, config, AUTH_MIGRATION), "AUTH__DATABASE__MIGRATE_ON_START must be false")

    def test_an_unrendered_envfrom_source_fails(self):
        self.assert_fails(docs(AUTH_SERVER), "envFrom ConfigMap auth-config is not in the rendered manifests")

    def test_a_missing_secret_key_fails(self):
        secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: external, namespace: t}\ndata: {k: eA==}\n"
        self.assert_fails(docs(AUTH_SERVER, AUTH_CONFIG, secret),
                          "reads key 'database-url' of Secret external, which has no such key")

    def test_compose_files_are_checked_too(self):
        self.assert_passes(COMPOSE, compose=True)
        bad = COMPOSE.replace("AUTH__MAIL__URL: log", "AUTH__MAIL__URI: log")
        self.assert_fails(bad, "AUTH__MAIL__URI is not a configuration key", "AUTH__MAIL__URL is missing", compose=True)


if __name__ == "__main__":
    unittest.main()
