"""Shared helpers of the end-to-end tests (plain stdlib): the server process, an HTTP client, SSE
and WebSocket readers, the event hash chain and a small JSON Schema checker, and a test runner."""
