"""Files, their tasks and rsync-style sync, content bytes, and the blob store under them all."""
