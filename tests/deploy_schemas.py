"""Schemas for the deploy files, all from installed packages (no network at test time).

* Kubernetes built-in kinds: the JSON schemas bundled in ``kubernetes-validate`` (strict
  variant: unknown fields are errors, as with ``kubectl apply --validate=strict``).
* Custom resources (ServiceMonitor, ScaledObject, TriggerAuthentication): no package ships
  their CRD JSON schemas as files, so they come from the ``cloudcoil-models-prometheus-operator``
  and ``cloudcoil-models-keda`` packages, pydantic models generated from the CRDs'
  ``openAPIV3Schema``. Their JSON schema is made strict here the same way (every object with
  declared properties rejects undeclared ones), then checked with ``jsonschema``.
* Compose: ``compose-spec.json`` of the Compose specification, vendored in ``check-jsonschema``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate

K8S_VERSION = "1.30"

__all__ = ["K8S_VERSION", "compose_errors", "crd_kinds", "k8s_errors"]


def _strict(node: Any) -> Any:
    """Forbid undeclared properties wherever properties are declared (recursively)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def _crd_models() -> dict[tuple[str, str], Any]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    return {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
        ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
    }


def crd_kinds() -> set[tuple[str, str]]:
    return set(_crd_models())


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    model = _crd_models()[(api_version, kind)]
    schema = _strict(model.model_json_schema(by_alias=True))
    # The object itself must say what it is (the models default these).
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft202012Validator(schema)


def k8s_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of one Kubernetes object (empty when valid)."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in _crd_models():
        validator = _crd_validator(*key)
        return [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(json.loads(json.dumps(doc)))
        ]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no schema: {exc.message}"]
    return []


@functools.cache
def _compose_validator() -> jsonschema.Draft7Validator:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return jsonschema.Draft7Validator(json.loads(ref.read_text("utf-8")))


def compose_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _compose_validator().iter_errors(doc)
    ]
