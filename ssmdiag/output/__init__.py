"""Where results go: renderers for the terminal and JSON (sinks for the daemon join them later)."""
