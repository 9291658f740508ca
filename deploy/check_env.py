#!/usr/bin/env python3
"""Checks the environment variables that deployment files give Spaceport's parts.

Every variable a part's container gets must be a real configuration key of that
part: a binary refuses unknown keys (exit 2), and a variable nobody reads is a
setting someone believes is in force. The real keys are read from
deploy/config/*.example.toml, which the test suite keeps equal to the built-in
defaults: `[section] key` is `PREFIX__SECTION__KEY`; arrays of tables (the
gateway's `routes`) cannot be set by environment variables.

Checked, per container whose image is one of the parts (other images, such as
PostgreSQL, are not ours and are skipped):
  - names from `env` and from ConfigMaps/Secrets pulled in by `envFrom`;
  - required settings: see REQUIRED below, plus DATABASE__URL for a `migrate` run;
  - a part whose migrations run as a separate Job/container must have
    DATABASE__MIGRATE_ON_START=false on its server;
  - `secretKeyRef`/`configMapKeyRef` keys exist when the object is rendered (objects
    that are not, like prod's external Secrets, are taken on trust).

Inputs are rendered Kubernetes manifests (`kubectl kustomize` output) and/or
compose files (`--compose`). With `--binaries DIR`, every container whose values
are all known is also run as `DIR/<part> check-config` with exactly that
environment, so the real binary has the last word.

Exit status: 0 clean, 1 problems found, 2 bad input.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "config"

# Part (binary and image name) -> environment prefix (service-kit's ENV_PREFIX).
PREFIXES = {
    "gateway": "GATEWAY",
    "auth-service": "AUTH",
    "booking-service": "BOOKING",
    "spaces-service": "SPACES",
    "events-service": "EVENTS",
}

_SERVICE_REQUIRED = {"DATABASE__URL", "CACHE__URL", "IDENTITY__GATEWAY_PUBLIC_KEYS"}
# What a server must be given in a cluster; its built-in defaults (SQLite under
# ./data, in-process cache, keys in files it creates) only suit one machine.
# The gateway's UPSTREAMS__* are added from the example file: every upstream.
REQUIRED = {
    "gateway": {"IDENTITY__SIGNING_KEY", "CACHE__URL"},
    "auth-service": _SERVICE_REQUIRED | {"SECRET__KEY", "MAIL__URL", "TOKENS__ISSUER"},
    "booking-service": set(_SERVICE_REQUIRED),
    # STORAGE__URL: the default, a directory under ./data, is writable in a
    # read-only container only where a volume is mounted, and is not shared by
    # replicas; so it is stated (an s3:// bucket, or a file:// volume). The public
    # URLs: the defaults name 127.0.0.1, which no client of a deployment reaches.
    "spaces-service": _SERVICE_REQUIRED | {"SECRET__KEY", "STORAGE__URL", "UPLOADS__PUBLIC_URL",
                                           "DELIVERY__CDN_URL"},
    # SECRET__KEY seals webhook secrets: every replica needs the same one. MAIL__URL:
    # the default writes files under ./data, which a read-only container cannot.
    "events-service": _SERVICE_REQUIRED | {"SECRET__KEY", "MAIL__URL"},
}
MIGRATE_REQUIRED = {"DATABASE__URL"}

# Read by every binary although they are not configuration keys.
PROCESS_VARIABLES = {"RUST_LOG", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

UNKNOWN = object()  # a value that exists but cannot be seen (an external Secret)


def config_keys(config_dir: Path = CONFIG_DIR) -> dict[str, set[str]]:
    """Every settable key of every part, without its prefix: `DATABASE__URL`."""
    keys: dict[str, set[str]] = {}
    for part in PREFIXES:
        path = config_dir / f"{part}.example.toml"
        if not path.is_file():
            _bad_input(f"{path} is missing")
        with path.open("rb") as f:
            keys[part] = set(_flatten(tomllib.load(f)))
    extra = sorted(p.name for p in config_dir.glob("*.example.toml")
                   if p.name.removesuffix(".example.toml") not in PREFIXES)
    if extra:
        _bad_input(f"no prefix known for {', '.join(extra)}; add it to PREFIXES")
    return keys


def _bad_input(message: str) -> None:
    print(f"check_env: {message}", file=sys.stderr)
    sys.exit(2)


def _flatten(table: dict, path: tuple[str, ...] = ()):
    for name, value in table.items():
        here = path + (name,)
        if isinstance(value, dict):
            yield from _flatten(value, here)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            continue  # an array of tables, e.g. [[routes]]: set in the file only
        else:
            yield "__".join(here).upper()


@dataclass
class Container:
    where: str  # for messages: "dev.yaml: Deployment/auth-service container auth-service"
    part: str
    group: str  # containers of one part that are deployed together (a namespace, a compose project)
    migrate: bool  # runs `migrate`, not `serve`
    env: dict[str, object] = field(default_factory=dict)  # name -> value, or UNKNOWN
    problems: list[str] = field(default_factory=list)


def part_of_image(image: str) -> str | None:
    """`registry.example.com/spaceport/auth-service:0.1.0@sha256:...` -> `auth-service`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    last = last.split(":", 1)[0]
    return last if last in PREFIXES else None


def _runs_migrate(command, args) -> bool:
    words = [str(w) for w in (command or []) + (args or [])]
    return "migrate" in words


# ---------------------------------------------------------------- Kubernetes


def load_manifests(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


def _pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return (spec.get("template") or {}).get("spec")


def kubernetes_containers(path: Path) -> list[Container]:
    docs = load_manifests(path)
    objects: dict[tuple[str, str, str], dict[str, object]] = {}
    for doc in docs:
        kind = doc.get("kind")
        if kind not in ("ConfigMap", "Secret"):
            continue
        meta = doc.get("metadata") or {}
        data: dict[str, object] = {}
        for k, v in (doc.get("data") or {}).items():
            data[k] = _b64(v) if kind == "Secret" else str(v)
        for k, v in (doc.get("stringData") or {}).items():
            data[k] = str(v)
        objects[(kind, meta.get("namespace") or "", meta.get("name"))] = data

    found = []
    for doc in docs:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        meta = doc.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        pod = _pod_spec(doc) or {}
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            part = part_of_image(str(c.get("image", "")))
            if part is None:
                continue
            container = Container(
                where=f"{path.name}: {doc['kind']}/{meta.get('name')} container {c.get('name')}",
                part=part,
                group=f"{path.name}:{namespace}",
                migrate=_runs_migrate(c.get("command"), c.get("args")),
            )
            _collect_kubernetes_env(container, c, namespace, objects)
            found.append(container)
    return found


def _b64(value) -> object:
    try:
        # kustomize wraps long values over several lines.
        return base64.b64decode("".join(str(value).split()), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return UNKNOWN


def _collect_kubernetes_env(container: Container, c: dict, namespace: str, objects) -> None:
    for source in c.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = objects.get((kind, namespace, ref.get("name")))
            if data is None:
                # Its keys become variables, and nobody can tell which: not allowed.
                container.problems.append(
                    f"envFrom {kind} {ref.get('name')} is not in the rendered manifests, so its "
                    "variable names cannot be checked; name each variable with env/valueFrom instead")
                continue
            for key, value in data.items():
                container.env[prefix + key] = value
    for var in c.get("env") or []:
        name = var.get("name")
        if "value" in var or "valueFrom" not in var:
            container.env[name] = str(var.get("value", ""))
            continue
        source = var["valueFrom"]
        for kind, ref_key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = objects.get((kind, namespace, ref.get("name")))
            if data is None:
                container.env[name] = UNKNOWN  # external: exists at run time
            elif ref.get("key") not in data:
                container.problems.append(
                    f"{name} reads key {ref.get('key')!r} of {kind} {ref.get('name')}, which has no such key")
                container.env[name] = UNKNOWN
            else:
                container.env[name] = data[ref.get("key")]
            break
        else:
            container.env[name] = UNKNOWN  # fieldRef / resourceFieldRef


# ---------------------------------------------------------------- compose


def compose_containers(path: Path) -> list[Container]:
    with path.open() as f:
        doc = yaml.safe_load(f) or {}
    found = []
    for name, service in (doc.get("services") or {}).items():
        part = part_of_image(str(service.get("image", "")))
        if part is None:
            build_args = ((service.get("build") or {}) if isinstance(service.get("build"), dict) else {}).get("args") or {}
            part = build_args.get("PACKAGE") if build_args.get("PACKAGE") in PREFIXES else None
        if part is None:
            continue
        command = service.get("command")
        command = command.split() if isinstance(command, str) else command
        container = Container(
            where=f"{path.name}: service {name}",
            part=part,
            group=f"{path.name}",
            migrate=_runs_migrate(command, None),
        )
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, UNKNOWN) for item in environment)
        for var, value in environment.items():
            # Compose interpolates ${...} at run time; only literal values are known.
            container.env[var] = UNKNOWN if value is None or "${" in str(value) else str(value)
        if service.get("env_file"):
            container.problems.append("env_file hides variable names from this check; use `environment`")
        found.append(container)
    return found


# ---------------------------------------------------------------- rules


def check(containers: list[Container], keys: dict[str, set[str]]) -> list[str]:
    required = {part: set(names) for part, names in REQUIRED.items()}
    required["gateway"] |= {k for k in keys["gateway"] if k.startswith("UPSTREAMS__")}
    owner_of_prefix = {prefix: part for part, prefix in PREFIXES.items()}

    for c in containers:
        own = PREFIXES[c.part]
        for name in sorted(c.env):
            prefix, sep, key = name.partition("__")
            if sep and prefix in owner_of_prefix:
                if prefix != own:
                    c.problems.append(f"{name} is read by {owner_of_prefix[prefix]}, not by {c.part}")
                elif key not in keys[c.part]:
                    c.problems.append(f"{name} is not a configuration key of {c.part} "
                                      f"(deploy/config/{c.part}.example.toml lists them all)")
            elif name not in PROCESS_VARIABLES:
                c.problems.append(f"{name} is read by no part (expected {own}__SECTION__KEY)")
        needed = MIGRATE_REQUIRED if c.migrate else required[c.part]
        for key in sorted(needed):
            value = c.env.get(f"{own}__{key}")
            if value is None:
                c.problems.append(f"required setting {own}__{key} is missing")
            elif value is not UNKNOWN and not str(value).strip():
                c.problems.append(f"required setting {own}__{key} is empty")

    # Where migrations run on their own, servers must not also run them.
    migrating = {(c.group, c.part) for c in containers if c.migrate}
    for c in containers:
        if c.migrate or (c.group, c.part) not in migrating:
            continue
        name = f"{PREFIXES[c.part]}__DATABASE__MIGRATE_ON_START"
        value = c.env.get(name)
        if value is UNKNOWN or str(value).strip().lower() != "false":
            c.problems.append(f"{c.part}'s migrations run separately, so {name} must be false")

    return [f"{c.where}: {p}" for c in containers for p in c.problems]


def run_binaries(containers: list[Container], bin_dir: Path) -> tuple[list[str], int, int]:
    """`<part> check-config` with each container's exact environment."""
    problems, ran, skipped = [], 0, 0
    with tempfile.TemporaryDirectory(prefix="check-env-") as workdir:  # ./data defaults land here
        for c in containers:
            binary = bin_dir.resolve() / c.part
            if not binary.is_file() or any(v is UNKNOWN for v in c.env.values()):
                skipped += 1
                continue
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **{k: str(v) for k, v in c.env.items()}}
            result = subprocess.run([str(binary), "check-config"], env=env, capture_output=True,
                                    text=True, timeout=60, cwd=workdir)
            ran += 1
            if result.returncode != 0:
                message = (result.stderr or result.stdout).strip().splitlines()
                problems.append(f"{c.where}: `{c.part} check-config` exited {result.returncode}: "
                                f"{message[-1] if message else ''}")
    return problems, ran, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("manifests", nargs="*", type=Path, help="rendered Kubernetes manifests")
    parser.add_argument("--compose", action="append", type=Path, default=[], help="a compose file")
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                        help="where the *.example.toml files are (default: deploy/config)")
    parser.add_argument("--binaries", type=Path,
                        help="directory with the built binaries: also run `check-config` with each environment")
    args = parser.parse_args(argv)
    if not args.manifests and not args.compose:
        parser.error("give rendered manifests and/or --compose files")

    keys = config_keys(args.config_dir)
    containers: list[Container] = []
    try:
        for path in args.manifests:
            containers += kubernetes_containers(path)
        for path in args.compose:
            containers += compose_containers(path)
    except (OSError, yaml.YAMLError) as e:
        print(f"check_env: {e}", file=sys.stderr)
        return 2
    if not containers:
        print("check_env: no Spaceport containers found; nothing was checked", file=sys.stderr)
        return 1

    problems = check(containers, keys)
    note = ""
    if args.binaries:
        more, ran, skipped = run_binaries(containers, args.binaries)
        problems += more
        note = f"; check-config run for {ran}, not run for {skipped} (binary missing or values external)"
    for p in problems:
        print(f"FAIL {p}")
    print(f"check_env: {len(containers)} containers checked, {len(problems)} problems{note}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
