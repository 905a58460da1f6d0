"""The database layer: tables, the engine and its readers, statements compiled once, pages
and migrations."""
