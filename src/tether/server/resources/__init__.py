"""The resource model (devices, things, locations, zones, ...) and data items and feeds."""
