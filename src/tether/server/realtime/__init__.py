"""Realtime: the WebSocket hub, the relay between server processes, and the event bus."""
