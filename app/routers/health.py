"""Health routes, public (no key): the container health check and the ALB's readiness check."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.routers.common import gateway_of
from app.schemas import Health

router = APIRouter(tags=["health"])
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
# HEAD too: uptime checkers and some load balancers probe with it (uvicorn sends no body).


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=Health, summary="The process is alive (HEAD too)")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=Health,
    summary="Ollama answers and the default model is loaded (HEAD too)",
    responses={503: {"model": Health, "description": "Not ready, or draining."}},
)
async def readyz(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    if gateway.drain.draining:
        return JSONResponse({"status": "draining", "reason": "shutting_down"}, status_code=503)
    ready, reason = await gateway.readiness.check()
    if ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
