"""Twins: what each device should be (desired), what it says it is (reported), and tags."""
