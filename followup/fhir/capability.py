"""The CapabilityStatement, generated from the handlers that serve the resources (it cannot list more or less)."""
from __future__ import annotations

from followup.fhir import enrol
from followup.fhir.common import base_url, validated
from followup.fhir.resources import HANDLERS
from followup.fhir.search import search_params

# What each search parameter is (FHIR's own definitions).
_PARAMS = {
    "patient": ("reference", "The patient the resource is about"),
    "status": ("token", "The resource's status"),
    "_lastUpdated": ("date", "When the resource last changed (ge, gt, le, lt)"),
}
#: How searches page.
_COUNT = "_count pages a search (default 20, at most 100); the Bundle's next link goes on."


def capability_statement() -> dict:
    resources = []
    for handler in HANDLERS.values():
        resource = {
            "type": handler.type,
            "interaction": [{"code": "read"}, {"code": "search-type", "documentation": _COUNT}],
            "searchParam": [{"name": name, "type": _PARAMS[name][0], "documentation": _PARAMS[name][1]}
                            for name in search_params(handler)],
        }
        if handler.type == "Patient":
            resource["operation"] = [{"name": "everything",
                                      "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        resources.append(resource)
    return validated({
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-05", "kind": "instance",
        "software": {"name": "Scar Watch"}, "implementation": {"description": "Scar Watch FHIR API",
                                                              "url": base_url()},
        # R4 JSON (the fhir.resources R4B models used to build it write R4 JSON for these types).
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {"description": "Authorization: Bearer TOKEN from POST /api/v1/auth/token; each clinic "
                                        "sees only its own patients."},
            "resource": resources,
            "interaction": [{"code": "transaction", "documentation":
                             "Enrolment: a Patient (with an identifier) and Conditions, each with at most one "
                             f"Procedure; at most {enrol.MAX_ENTRIES} entries."}],
        }],
    })
