"""The Tether SDK: needs only httpx and websockets, never the server's dependencies."""

from tether.client._answers import Answer
from tether.client._async_client import AsyncClient, aclose_all
from tether.client._async_commands import AsyncCommand, AsyncCommandGroup, AsyncCommands
from tether.client._async_files import AsyncFiles, AsyncFileTask
from tether.client._async_realtime import (
    AsyncBroadcast,
    AsyncChannel,
    AsyncEventStream,
    AsyncListener,
    AsyncRealtime,
)
from tether.client._async_resources import (
    AsyncCollection,
    AsyncContent,
    AsyncDataCollection,
    AsyncDataItem,
    AsyncDevice,
    AsyncExperience,
    AsyncFeed,
    AsyncLocation,
    AsyncProject,
    AsyncResource,
    AsyncResultSet,
    AsyncThing,
    AsyncZone,
)
from tether.client._async_telemetry import AsyncTelemetry
from tether.client._async_twin import AsyncTwins
from tether.client._async_updates import (
    AsyncDeployment,
    AsyncDownloadablePackage,
    AsyncUpdateCheck,
    AsyncUpdates,
)
from tether.client._commands import ReceivedCommand
from tether.client._config import Retries
from tether.client._credentials import Credentials
from tether.client._oauth import OAuthFlow, OAuthGrant
from tether.client._session import USE_CLIENT_DEFAULT, AuthPayload, PairingCode
from tether.client._sync_client import Client, close_all
from tether.client._sync_commands import Command, CommandGroup, Commands
from tether.client._sync_files import Files, FileTask
from tether.client._sync_realtime import Broadcast, Channel, EventStream, Listener, Realtime
from tether.client._sync_resources import (
    Collection,
    Content,
    DataCollection,
    DataItem,
    Device,
    Experience,
    Feed,
    Location,
    Project,
    Resource,
    ResultSet,
    Thing,
    Zone,
)
from tether.client._sync_telemetry import Telemetry
from tether.client._sync_twin import Twins
from tether.client._sync_updates import Deployment, DownloadablePackage, UpdateCheck, Updates
from tether.client._telemetry import Outbox, Reading, RejectedEntry
from tether.client._updates import Package

__all__ = [
    "USE_CLIENT_DEFAULT",
    "Answer",
    "AsyncBroadcast",
    "AsyncChannel",
    "AsyncClient",
    "AsyncCollection",
    "AsyncCommand",
    "AsyncCommandGroup",
    "AsyncCommands",
    "AsyncContent",
    "AsyncDataCollection",
    "AsyncDataItem",
    "AsyncDeployment",
    "AsyncDevice",
    "AsyncDownloadablePackage",
    "AsyncEventStream",
    "AsyncExperience",
    "AsyncFeed",
    "AsyncFileTask",
    "AsyncFiles",
    "AsyncListener",
    "AsyncLocation",
    "AsyncProject",
    "AsyncRealtime",
    "AsyncResource",
    "AsyncResultSet",
    "AsyncTelemetry",
    "AsyncThing",
    "AsyncTwins",
    "AsyncUpdateCheck",
    "AsyncUpdates",
    "AsyncZone",
    "AuthPayload",
    "Broadcast",
    "Channel",
    "Client",
    "Collection",
    "Command",
    "CommandGroup",
    "Commands",
    "Content",
    "Credentials",
    "DataCollection",
    "DataItem",
    "Deployment",
    "Device",
    "DownloadablePackage",
    "EventStream",
    "Experience",
    "Feed",
    "FileTask",
    "Files",
    "Listener",
    "Location",
    "OAuthFlow",
    "OAuthGrant",
    "Outbox",
    "Package",
    "PairingCode",
    "Project",
    "Reading",
    "Realtime",
    "ReceivedCommand",
    "RejectedEntry",
    "Resource",
    "ResultSet",
    "Retries",
    "Telemetry",
    "Thing",
    "Twins",
    "UpdateCheck",
    "Updates",
    "Zone",
    "aclose_all",
    "close_all",
]
