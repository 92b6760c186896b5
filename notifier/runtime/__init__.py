"""Process-level machinery: supervised tasks, signals, graceful shutdown, the HTTP server."""
