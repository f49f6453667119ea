"""The explorer: server-rendered pages and the in-browser proof check."""
