#!/usr/bin/env python3
"""Validates a Compose file against the Compose specification's JSON schema (the copy
check-jsonschema ships, `vendor.compose-spec`), then what the schema cannot see: services
named in `depends_on` exist, named volumes and networks are declared, bind-mounted files
exist in the repository, and the gateway replicas share what they must share.

    check_compose.py deploy/compose.yaml
"""

import importlib.resources
import json
import pathlib
import sys

import jsonschema
import yaml


def schema() -> dict:
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text(encoding="utf-8"))


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = pathlib.Path(sys.argv[1])
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in jsonschema.validators.validator_for(schema())(schema()).iter_errors(doc)
    ]
    services = doc.get("services", {})
    volumes = set(doc.get("volumes") or {})
    networks = set(doc.get("networks") or {}) | {"default"}
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                errors.append(f"services.{name}.depends_on: no service {dep!r}")
        for v in svc.get("volumes", []):
            source = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if source.startswith((".", "/")):
                if not (path.parent / source).exists():
                    errors.append(f"services.{name}.volumes: {source} does not exist")
            elif source and source not in volumes:
                errors.append(f"services.{name}.volumes: volume {source!r} is not declared")
        nets = svc.get("networks", [])
        for n in nets if isinstance(nets, list) else nets.keys():
            if n not in networks:
                errors.append(f"services.{name}.networks: network {n!r} is not declared")
        build = svc.get("build")
        if isinstance(build, dict):
            context = path.parent / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).exists():
                errors.append(f"services.{name}.build: no Dockerfile in {context}")
    gateways = {n: s for n, s in services.items() if n.startswith("gateway-")}
    if len(gateways) < 2:
        errors.append("fewer than two gateway replicas")
    secrets = {s.get("environment", {}).get("GATEWAY_JWT_SECRET") for s in gateways.values()}
    if len(secrets) != 1:
        errors.append("the gateway replicas do not share one GATEWAY_JWT_SECRET")
    journals = [
        v for s in gateways.values() for v in s.get("volumes", []) if "/var/lib/affine-gateway" in v
    ]
    if len(set(journals)) != len(gateways):
        errors.append("each gateway replica needs its own journal volume")
    for e in errors:
        print(f"ERROR {path}: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{path}: valid against the Compose specification ({len(services)} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
