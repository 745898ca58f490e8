"""Strict schema validation of every rendered object: Kubernetes' own kinds against the
Kubernetes OpenAPI schemas that the `kubernetes-validate` package bundles (strict: unknown
fields rejected), the operators' kinds against the schemas in tests/k8s/schemas (ours)."""

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from rendered import fail, ok

KUBERNETES_VERSION = "1.32.0"
HERE = Path(__file__).resolve().parent
# apiVersion -> the schema file that defines its kinds (under $defs, by kind).
OPERATOR_SCHEMAS = {
    "kafka.strimzi.io/v1beta2": "strimzi.schema.yaml",
    "postgresql.cnpg.io/v1": "cnpg.schema.yaml",
    "barmancloud.cnpg.io/v1": "barman-cloud.schema.yaml",
    "monitoring.coreos.com/v1": "prometheus-operator.schema.yaml",
}


class Schemas:
    def __init__(self, directory=HERE / "schemas"):
        resources = []
        self.documents = {}
        for path in sorted(Path(directory).glob("*.schema.yaml")):
            document = yaml.safe_load(path.read_text())
            jsonschema.Draft202012Validator.check_schema(document)
            resources.append((document["$id"], Resource.from_contents(document)))
            self.documents[path.name] = document
        self.registry = Registry().with_resources(resources)
        self.validators = {}

    def validator(self, api_version, kind):
        file = OPERATOR_SCHEMAS.get(api_version)
        if file is None:
            return None
        document = self.documents[file]
        if kind not in document.get("$defs", {}):
            return None
        key = (api_version, kind)
        if key not in self.validators:
            self.validators[key] = jsonschema.Draft202012Validator(
                {"$ref": f"{document['$id']}#/$defs/{kind}"}, registry=self.registry)
        return self.validators[key]


@lru_cache(maxsize=None)
def schemas():
    """The operators' schemas, loaded once per process."""
    return Schemas()


@lru_cache(maxsize=4096)
def kubernetes_errors(text):
    """The first error of a Kubernetes object (given as JSON) against its schema, or None; one
    validation per distinct object (defects.py checks many nearly identical renders)."""
    obj = json.loads(text)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return ("missing", "")
    except kubernetes_validate.ValidationError as e:
        return ("/".join(str(p) for p in e.path) or "(top)", e.message)
    return None


def errors_of(validator, obj):
    return sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))


def validate(objects, where, schemas):
    """Fails on the first object that is not valid; returns how many were checked per family."""
    counts = {"kubernetes": 0, "operators": 0}
    for o in objects:
        name = f"{where}: {o.get('kind')} {o.get('metadata', {}).get('name')}"
        api_version = o.get("apiVersion", "")
        validator = schemas.validator(api_version, o.get("kind"))
        if validator is not None:
            errors = errors_of(validator, o)
            if errors:
                e = errors[0]
                path = "/".join(str(p) for p in e.absolute_path) or "(top)"
                fail("schema", f"{name} at {path}: {e.message}")
            counts["operators"] += 1
            continue
        if api_version in OPERATOR_SCHEMAS:
            fail("schema", f"{name}: tests/k8s/schemas/{OPERATOR_SCHEMAS[api_version]} has no schema for {o.get('kind')}")
        error = kubernetes_errors(json.dumps(o, sort_keys=True))
        if error and error[0] == "missing":
            fail("schema", f"{name}: neither Kubernetes {KUBERNETES_VERSION} nor tests/k8s/schemas knows "
                 f"{api_version} {o.get('kind')} (add a schema there)")
        if error:
            fail("schema", f"{name} at {error[0]}: {error[1]}")
        counts["kubernetes"] += 1
    return counts


def check_schemas(r, schemas):
    counts = validate(r.objects, r.overlay, schemas)
    ok("schema", r.overlay, f"{counts['kubernetes']} Kubernetes objects valid against the Kubernetes "
       f"{KUBERNETES_VERSION} schemas (strict), {counts['operators']} Strimzi, CloudNativePG and Prometheus "
       "operator objects valid against tests/k8s/schemas (strict)")
