"""Resource objects and collections of the EXP model, asyncio flavour.

A collection creates, gets, finds (an iterable over every page that also exposes `total` and
the first page's `results`) and deletes; an object has `id`, `name`, `document`, `save()`,
`refresh()`, `delete()` and the relations of its kind.

This file is the source of both twins: `scripts/unasync.py` writes `_sync_resources.py` from
it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

from tether._exceptions import ConfigurationError, unexpected_answer
from tether.client._async_files import _async_chunks, ranged
from tether.client._files import Source, opened_source, upload_headers

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient
    from tether.client._async_realtime import AsyncChannel

R = TypeVar("R")


def data_path(group: str, key: str) -> str:
    if not group or not key or "/" in group or "/" in key:
        raise ConfigurationError("A data item's group and key are non-empty and have no '/'.")
    return f"data/{quote(group, safe='')}/{quote(key, safe='')}"


LISTED_AS_THEY_ARE = frozenset(
    {
        *("name", "location_id", "experience_id", "zone_id", "member_id", "parent_id"),
        *("online", "sort", "limit", "after"),
    }
)
"""What a find passes through: relations, presence, order and paging. Every other keyword is a
document field."""


def find_query(filters: Mapping[str, Any]) -> dict[str, Any]:
    """A find's query string: `subtype="player"` (or `document={"subtype": "player"}`) asks for
    `document[subtype]=player`; `**{"address.city": "Oslo"}` names a nested field;
    `installed={"firmware": "2.1"}` finds devices running that version; `online=True`;
    `desired=`, `reported=` or `tags={"site": "oslo"}` finds devices by their twin's fields."""
    query: dict[str, Any] = {}
    for name, value in filters.items():
        if name == "document" and isinstance(value, Mapping):
            query |= find_query({f"document[{k}]": v for k, v in value.items()})
        elif name in TWIN_SECTIONS and isinstance(value, Mapping):
            query |= {f"{name}[{k}]": _text(v) for k, v in value.items()}
        elif name == "installed" and isinstance(value, Mapping):
            query |= {f"installed[{k}]": str(v) for k, v in value.items()}
        elif isinstance(value, bool) and name in LISTED_AS_THEY_ARE:
            query[name] = json.dumps(value)
        elif value is None or name in LISTED_AS_THEY_ARE:
            query[name] = value
        else:
            key = name if name.startswith("document[") else f"document[{name}]"
            query[key] = _text(value)
    return query


TWIN_SECTIONS = ("desired", "reported", "tags")


def _text(value: Any) -> str:
    """A filter's value as the query string carries it (booleans as JSON: true, false)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


class AsyncResultSet(Generic[R]):
    """The pages of a list: `total`, the first page's `results`, and iteration over all."""

    def __init__(
        self, client: AsyncClient, page: dict[str, Any], parse: Callable[[dict[str, Any]], R]
    ) -> None:
        self._client = client
        self._parse = parse
        self.total: int = int(page.get("total", 0))
        self.results: list[R] = [parse(item) for item in page.get("results", [])]
        self._next: str | None = page.get("next")

    def __len__(self) -> int:
        return self.total

    async def __aiter__(self) -> AsyncIterator[R]:
        for item in self.results:
            yield item
        next_url = self._next
        while next_url:
            page = await self._client.get(next_url)
            for item in page.get("results", []):
                yield self._parse(item)
            next_url = page.get("next")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} total={self.total}>"


def document_of(data: Any) -> dict[str, Any]:
    """`data` when it is the JSON object every resource answer is; a Tether error otherwise (a
    proxy's page where the API should have answered)."""
    if not isinstance(data, dict):
        raise unexpected_answer(200, f"{type(data).__name__} data")
    return data


class AsyncResource:
    """One stored object: its fields live in `data`; `document` is free-form JSON."""

    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: AsyncClient, path: str, data: dict[str, Any]) -> None:
        self._client = client
        self._path = path
        self.data = document_of(data)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    uuid = id

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @name.setter
    def name(self, value: str) -> None:
        self.data["name"] = value

    @property
    def document(self) -> dict[str, Any]:
        return self.data.setdefault("document", {})  # type: ignore[no-any-return]

    @document.setter
    def document(self, value: dict[str, Any]) -> None:
        self.data["document"] = value

    @property
    def project_id(self) -> str | None:
        return self.data.get("project_id")

    def get_channel(self, system: bool = False, consumer: bool = False) -> AsyncChannel:
        """This object's own channel (named by its id), e.g. to talk to one device."""
        return self._client.get_channel(self.id, system, consumer)

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(str(self.data["created_at"]).replace("Z", "+00:00"))

    @property
    def updated_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(str(self.data["updated_at"]).replace("Z", "+00:00"))

    @property
    def url(self) -> str:
        return f"{self._path}/{self.id}"

    async def save(self) -> None:
        """Send the name, document and relations; the object takes the stored state."""
        body: dict[str, Any] = {"name": self.name, "document": self.document}
        body.update({f: self.data.get(f) for f in self._fields if f in self.data})
        self.data = await self._client.patch(self.url, body)

    async def refresh(self) -> None:
        self.data = await self._client.get(self.url)

    async def delete(self) -> None:
        await self._client.delete(self.url)

    def _make(self, path: str, cls: type[AsyncResource]) -> Callable[[dict[str, Any]], Any]:
        return lambda data: cls(self._client, path, data)

    async def _one(self, path: str, cls: type[AsyncResource], item_id: str | None) -> Any:
        if not item_id:
            return None
        return cls(self._client, path, await self._client.get(f"{path}/{item_id}"))

    async def _find(
        self, path: str, cls: type[AsyncResource], params: dict[str, Any]
    ) -> AsyncResultSet[Any]:
        page = await self._client.get(path, find_query(params))
        return AsyncResultSet(self._client, page, self._make(path, cls))

    async def _all(self, path: str, cls: type[AsyncResource], params: dict[str, Any]) -> list[Any]:
        return [item async for item in await self._find(path, cls, params)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResource) and other.data.get("id") == self.data.get("id")

    def __hash__(self) -> int:
        return hash(self.data.get("id"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.data.get('id')} {self.name!r}>"


class _AsyncPlaced(AsyncResource):
    """Devices and things: placed at a location, in zones, part of an experience."""

    _fields = ("location_id", "experience_id", "zone_ids")

    @property
    def location_id(self) -> str | None:
        return self.data.get("location_id")

    @location_id.setter
    def location_id(self, value: str | None) -> None:
        self.data["location_id"] = value

    @property
    def experience_id(self) -> str | None:
        return self.data.get("experience_id")

    @experience_id.setter
    def experience_id(self, value: str | None) -> None:
        self.data["experience_id"] = value

    @property
    def zone_ids(self) -> list[str]:
        return self.data.setdefault("zone_ids", [])  # type: ignore[no-any-return]

    @zone_ids.setter
    def zone_ids(self, value: list[str]) -> None:
        self.data["zone_ids"] = list(value)

    async def get_location(self) -> AsyncLocation | None:
        return await self._one("locations", AsyncLocation, self.location_id)  # type: ignore[no-any-return]

    async def get_experience(self) -> AsyncExperience | None:
        return await self._one("experiences", AsyncExperience, self.experience_id)  # type: ignore[no-any-return]

    async def get_zones(self) -> list[AsyncZone]:
        if not self.zone_ids:
            return []
        return await self._all("zones", AsyncZone, {"member_id": self.id})


class AsyncDevice(_AsyncPlaced):
    """A device: it has its own credentials (see `collection.rotate_secret`)."""

    @property
    def secret(self) -> str | None:
        """The device's secret, on the object `devices.create()` returned and there only: the
        server shows it once and keeps only its hash, so store it now (None elsewhere)."""
        value = self.data.get("secret")
        return None if value is None else str(value)


class AsyncThing(_AsyncPlaced):
    """A thing: an object a device can sense (a tag, a product, a person)."""


class _AsyncDataset(AsyncResource):
    """A location or project: the devices and things in it announce their moves."""

    async def on_move(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call `callback(frame)` whenever a device or thing of this location or project gets a
        new position (its document's `latitude` and `longitude`); the frame's `document` holds
        `id`, `kind`, `latitude` and `longitude`."""
        await self._client.on(f"{self.data['kind']}.{self.id}:moved", callback)


class AsyncLocation(_AsyncDataset):
    async def get_devices(self, **params: Any) -> AsyncResultSet[AsyncDevice]:
        return await self._find("devices", AsyncDevice, params | {"location_id": self.id})

    async def get_things(self, **params: Any) -> AsyncResultSet[AsyncThing]:
        return await self._find("things", AsyncThing, params | {"location_id": self.id})

    async def get_zones(self) -> list[AsyncZone]:
        return await self._all("zones", AsyncZone, {"location_id": self.id})

    def get_layout_url(self) -> str:
        """The full URL of the location's layout image (404 until one is uploaded)."""
        return self._client._session.resolve(str(self.data.get("layout_url", "")))

    async def upload_layout(self, source: Source) -> dict[str, Any]:
        """Store the location's layout image (a path, a binary file object or a (filename,
        file object) pair; the file name gives the media type served)."""
        return await _upload(self._client, f"locations/{self.id}/layout", source)

    async def read_layout(self) -> bytes:
        """The layout image's bytes; `NotFoundError` if none was uploaded."""
        return await self._client.request(  # type: ignore[no-any-return]
            "GET", f"locations/{self.id}/layout", raw=True
        )


class AsyncZone(AsyncResource):
    _fields = ("location_id",)

    @property
    def key(self) -> str:
        return str(self.document.get("key", self.id))

    @property
    def location_id(self) -> str | None:
        return self.data.get("location_id")

    async def get_devices(self, **params: Any) -> AsyncResultSet[AsyncDevice]:
        return await self._find("devices", AsyncDevice, params | {"zone_id": self.id})

    async def get_things(self, **params: Any) -> AsyncResultSet[AsyncThing]:
        return await self._find("things", AsyncThing, params | {"zone_id": self.id})

    async def get_location(self) -> AsyncLocation | None:
        return await self._one("locations", AsyncLocation, self.location_id)  # type: ignore[no-any-return]


class AsyncExperience(AsyncResource):
    async def get_devices(self, **params: Any) -> AsyncResultSet[AsyncDevice]:
        return await self._find("devices", AsyncDevice, params | {"experience_id": self.id})


class AsyncFeed(AsyncResource):
    async def get_data(self, **params: Any) -> AsyncResultSet[dict[str, Any]]:
        """The feed's entries, oldest first: each has `id`, `value` and `created_at`."""
        page = await self._client.get(f"{self.url}/data", params)
        return AsyncResultSet(self._client, page, lambda entry: entry)

    async def add_data(self, value: Any) -> dict[str, Any]:
        return await self._client.post(f"{self.url}/data", {"value": value})  # type: ignore[no-any-return]


class AsyncContent(AsyncResource):
    """A content item: delivery URLs, variants and children (bytes come from the file store)."""

    _fields = ("parent_id",)

    @property
    def subtype(self) -> str | None:
        return self.document.get("subtype")

    def get_url(self) -> str:
        return self._client._session.resolve(str(self.data.get("url", "")))

    def has_variant(self, name: str) -> bool:
        return name in (self.data.get("variants") or {})

    def get_variant_url(self, name: str) -> str | None:
        url = (self.data.get("variants") or {}).get(name)
        return self._client._session.resolve(url) if url else None

    async def get_children(self, **params: Any) -> AsyncResultSet[AsyncContent]:
        return await self._find("content", AsyncContent, params | {"parent_id": self.id})

    async def upload(self, source: Source, variant: str | None = None) -> dict[str, Any]:
        """Store the item's bytes (or a variant's), streamed from a path, a binary file object
        or a (filename, file object) pair; the file name gives the media type served."""
        return await _upload(self._client, f"content/{self.id}/data", source, variant)

    async def read(self, variant: str | None = None) -> bytes:
        """The item's bytes (or a variant's), whole in memory (`iter_bytes` streams)."""
        return await self._client.request(  # type: ignore[no-any-return]
            "GET", f"content/{self.id}/data", params={"variant": variant}, raw=True
        )

    async def iter_bytes(self, variant: str | None = None) -> AsyncIterator[bytes]:
        """The item's bytes (or a variant's) as they come, a window at a time."""
        query = f"?variant={quote(variant, safe='')}" if variant else ""
        async for chunk in ranged(self._client, f"content/{self.id}/data{query}"):
            yield chunk


async def _upload(
    client: AsyncClient, path: str, source: Source, variant: str | None = None
) -> dict[str, Any]:
    """Stream `source` to the bytes a resource carries at `path`."""
    with opened_source(source) as (stream, size):
        return await client.request(  # type: ignore[no-any-return]
            "PUT",
            path,
            params={"variant": variant} if variant else None,
            content=_async_chunks(stream, None, size),
            headers=upload_headers(source, size),
        )


class AsyncProject(_AsyncDataset):
    """A project: the scope of project-bound API tokens."""


class AsyncCollection(Generic[R]):
    """All objects of one kind that the client may see."""

    def __init__(self, client: AsyncClient, path: str, cls: type[R]) -> None:
        self._client = client
        self._path = path
        self._cls = cls

    def _wrap(self, data: dict[str, Any]) -> R:
        return self._cls(self._client, self._path, data)  # type: ignore[call-arg]

    async def create(
        self, name: str = "", document: dict[str, Any] | None = None, **fields: Any
    ) -> R:
        """Create an object; `fields` are the kind's relations (location_id, zone_ids, …)."""
        body = {"name": name, "document": document or {}} | fields
        return self._wrap(await self._client.post(self._path, body))

    async def get(self, id: str) -> R:
        """The object with this id; `NotFoundError` if there is none the caller may see."""
        return self._wrap(await self._client.get(f"{self._path}/{id}"))

    async def find(self, **filters: Any) -> AsyncResultSet[R]:
        """Objects matching the filters: relations (name, location_id, zone_id, …), paging
        (limit), order (`sort="name"`, `"-name"`, `"-created"`), for devices `online=True` and
        `installed={"firmware": "2.1"}`, and any document field (`subtype="player"`,
        `**{"address.city": "Oslo"}`)."""
        page = await self._client.get(self._path, find_query(filters))
        return AsyncResultSet(self._client, page, self._wrap)

    async def delete(self, id: str) -> None:
        await self._client.delete(f"{self._path}/{id}")

    async def rotate_secret(self, id: str) -> str:
        """Issue a new secret for a device or app (the old one stops working); returns it."""
        data = await self._client.post(f"{self._path}/{id}/secret")
        return str(data["secret"])


class AsyncDataItem:
    """A (group, key) -> JSON value document."""

    def __init__(self, client: AsyncClient, data: dict[str, Any]) -> None:
        self._client = client
        self.data = document_of(data)
        self.group: str = data["group"]
        self.key: str = data["key"]
        self.value: Any = data.get("value")

    @property
    def url(self) -> str:
        return data_path(self.group, self.key)

    async def save(self) -> None:
        self._accept(await self._client.put(self.url, self.value))

    async def refresh(self) -> None:
        self._accept(await self._client.get(self.url))

    async def delete(self) -> None:
        await self._client.delete(self.url)

    def get_channel(self, system: bool = False, consumer: bool = False) -> AsyncChannel:
        """This item's own channel (named `data:<group>/<key>`), as every resource has one."""
        return self._client.get_channel(f"data:{self.group}/{self.key}", system, consumer)

    def _accept(self, data: dict[str, Any]) -> None:
        self.data = data
        self.group, self.key, self.value = data["group"], data["key"], data.get("value")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.group}/{self.key}>"


class AsyncDataCollection:
    """Data items by group and key."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def _wrap(self, data: dict[str, Any]) -> AsyncDataItem:
        return AsyncDataItem(self._client, data)

    async def create(self, group: str, key: str, value: Any) -> AsyncDataItem:
        """Create or replace the item at (group, key)."""
        return self._wrap(await self._client.put(data_path(group, key), value))

    async def get(self, group: str, key: str) -> AsyncDataItem:
        return self._wrap(await self._client.get(data_path(group, key)))

    async def find(self, **filters: Any) -> AsyncResultSet[AsyncDataItem]:
        page = await self._client.get("data", filters)
        return AsyncResultSet(self._client, page, self._wrap)

    async def delete(self, group: str, key: str) -> None:
        await self._client.delete(data_path(group, key))
