"""Each area declares what deleting a device, app or project means for its own tables; the
declarations are all in place once the app is built (the behaviour itself is tested through
the API: test_project_deletion, test_telemetry, test_fleet_versions, test_oauth)."""

from __future__ import annotations

import tether.server.app  # noqa: F401  (builds the routes, which declare)
from tether.server.db.cascades import declared


def test_every_area_declares_what_a_delete_means_for_its_tables() -> None:
    assert set(declared("device")) == {
        "tether.server.identity.sessions._stop_credentials",
        "tether.server.telemetry.retention._forget_points",
        "tether.server.updates.installed._forget_device",
        "tether.server.commands.store._forget_commands",
        "tether.server.twin.store._forget_twins",
    }
    assert set(declared("app")) == {
        "tether.server.identity.sessions._stop_credentials",
        "tether.server.identity.oauth._end_sign_ins",
    }
    assert set(declared("project")) == {
        "tether.server.files.tree._forget_tree",
        "tether.server.resources.data._forget_items",
        "tether.server.resources.kinds._forget_held",
        "tether.server.commands.store._forget_groups",
    }
    assert declared("thing") == ()
