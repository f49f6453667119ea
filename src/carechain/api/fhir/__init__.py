"""The FHIR R5 REST facade (``/fhir``) and the patient's access log (``/v1/patients``)."""

from carechain.api.fhir.access_log import router as patients_router
from carechain.api.fhir.routes import router as fhir_router

__all__ = ["fhir_router", "patients_router"]
