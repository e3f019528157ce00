"""The gateway: an authenticated, bounded, streaming FastAPI front for Ollama.

`uvicorn app.main:app` serves it; app.factory.create_app builds it; app.contract declares its
settings, timeout budget and metrics for the gateway and the template generator alike.
"""
