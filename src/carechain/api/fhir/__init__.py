"""The FHIR R5 REST facade (``/fhir``) and the patient's access log (``/v1/patients``)."""

from fastapi import APIRouter

from carechain.api.fhir import binary, routes
from carechain.api.fhir.access_log import router as patients_router

fhir_router = APIRouter()
"""``/fhir``: the Binary routes first (they win over the generic ``/fhir/{type}`` ones)."""
fhir_router.include_router(binary.router)
fhir_router.include_router(routes.router)

__all__ = ["fhir_router", "patients_router"]
