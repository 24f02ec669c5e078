"""Fakes of external services (Ollama, OpenAI-compatible servers) as real HTTP servers on 127.0.0.1."""
