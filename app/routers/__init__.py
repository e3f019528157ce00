"""One router per file: health (public), ollama (/api/*), openai (/v1/*)."""
