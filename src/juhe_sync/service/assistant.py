"""What an AI assistant may ask of juhe-sync, read-only, answered compactly for its context.

Knows no MCP and no HTTP: ``web.mcp`` binds these methods to the MCP SDK, over stdio and over
HTTP. Every call names who asks (a ``Principal``): an API token's device scope holds here exactly
as in the HTTP API, checked before anything about the device is read (a device outside the scope is
refused the same way whether it exists or not).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from juhe_sync.errors import Forbidden, InvalidParams, NotFound
from juhe_sync.ids import norm_id
from juhe_sync.records import Device
from juhe_sync.service.access import Principal
from juhe_sync.service.compact import compact_message, local_time, localized, pruned, query_bound, shorten
from juhe_sync.service.queries import QueryService, require_guid, text_param
from juhe_sync.service.runtime import Runtime

#: The principal of ``juhe-sync mcp`` over stdio: whoever may run it may read the database anyway;
#: ``--guid`` narrows what it shows.
LOCAL = "juhe-sync mcp"
#: Most extra contact fields shown (the platform's own, kept as they came).
_DETAILS = 30


def local_principal(guids: Iterable[str] = ()) -> Principal:
    chosen = frozenset(g.strip() for g in guids if g.strip())
    return Principal(LOCAL, chosen or None, False)


class Assistant:
    """The tools. ``runtime`` (the server's) adds what only a running server knows: whether a
    pull sync waits or runs, and the WebSocket's state."""

    def __init__(self, queries: QueryService, zone: tzinfo, runtime: Runtime | None = None):
        self.queries = queries
        self.store = queries.store
        self.zone = zone
        self.runtime = runtime

    def _device(self, who: Principal, guid: str) -> Device:
        guid = require_guid(guid)
        if not who.may_read(guid):
            if who.name == LOCAL:
                allowed = ", ".join(sorted(who.guids or ()))
                raise Forbidden(f"this server may not read device {guid}: started with --guid {allowed}")
            raise Forbidden(f"this token may not read device {guid}")
        device = self.store.device(guid)
        if device is None:
            raise NotFound(f"Device {guid} not found: list_devices shows the devices you may read")
        return device

    def list_devices(self, who: Principal, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        if self.runtime is not None:
            data = self.runtime.devices(who.guids, 1, limit, cursor)
        else:
            data = self.queries.devices(who.guids, 1, limit, cursor, busy=lambda guid: False)
        devices = [
            pruned(
                {
                    "guid": d["guid"],
                    "kind": d["kind"],
                    "account_id": d["account_id"],
                    "account_name": d["name"],
                    "corp_id": d["corp_id"],
                    "online": d["online"],
                    "status": d["status"],
                    "messages_count": d["messages_count"],
                    "contacts_count": d["contacts_count"],
                    "rooms_count": d["rooms_count"],
                    "last_callback_time": d["last_callback_time"],
                    "last_sync_time": d["last_sync_time"],
                    "last_error": d["last_error"],
                }
            )
            for d in data["devices"]
        ]
        return {
            "total": data["total"],
            "devices": localized(devices, self.zone),
            "next_cursor": data["next_cursor"],
        }

    def list_conversations(
        self,
        who: Principal,
        guid: str,
        name: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        device = self._device(who, guid)
        data = self.queries.conversations(
            device.guid, keyword=name, kind=kind, page=1, limit=limit, cursor=cursor
        )
        conversations = []
        for c in data["conversations"]:
            last = c["last_message"]
            outbound = last["direction"] == "outbound"
            sender = last["sender_name"] or (device.account_name if outbound else None) or last["from"]
            conversations.append(
                pruned(
                    {
                        "conversation_id": c["conversation_id"],
                        "name": c["name"],
                        "remark": c["remark"] if c["remark"] != c["name"] else None,
                        "message_count": c["message_count"],
                        "last_message_time": local_time(c["last_message_time"], self.zone),
                        "last_message": f"{sender}: {last['text']}",
                    }
                )
            )
        return {"total": data["total"], "conversations": conversations, "next_cursor": data["next_cursor"]}

    def search_messages(
        self,
        who: Principal,
        guid: str,
        keyword: str,
        conversation_id: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        max_chars: int = 300,
    ) -> dict[str, Any]:
        device = self._device(who, guid)
        if not keyword:
            raise InvalidParams("keyword must not be empty")
        data = self.queries.messages(
            device.guid,
            conversation_id=conversation_id,
            keyword=keyword,
            start_time=query_bound(start_time, self.zone, end=False),
            end_time=query_bound(end_time, self.zone, end=True),
            page=1,
            limit=limit,
            order="desc",
            cursor=cursor,
        )
        return self._messages(device, data, conversation_id or None, max_chars)

    def get_messages(
        self,
        who: Principal,
        guid: str,
        conversation_id: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        around_message_id: str | None = None,
        order: str = "desc",
        limit: int = 30,
        cursor: str | None = None,
        max_chars: int = 1000,
    ) -> dict[str, Any]:
        device = self._device(who, guid)
        if around_message_id and (start_time or end_time or cursor):
            raise InvalidParams(
                "around_message_id takes only conversation_id, order and limit: leave start_time, "
                "end_time and cursor out (page on from its answer's next_cursor or prev_cursor)"
            )
        data = self.queries.messages(
            device.guid,
            conversation_id=conversation_id,
            keyword=None,
            start_time=query_bound(start_time, self.zone, end=False),
            end_time=query_bound(end_time, self.zone, end=True),
            page=1,
            limit=limit,
            order=order,
            cursor=cursor,
            around=around_message_id,
        )
        answer = self._messages(device, data, conversation_id or data.get("conversation_id"), max_chars)
        return {"order": order, **answer}

    def _messages(
        self, device: Device, data: dict[str, Any], conversation: str | None, max_chars: int
    ) -> dict[str, Any]:
        """A page of messages, with the names of their conversations and of senders without one."""
        items = data["messages"]
        keys = {m["conversation_id"] for m in items} | {
            f"S:{m['from']}" for m in items if not m["sender_name"]
        }
        if conversation is not None:
            keys.add(conversation)
        names = self.store.display_names(device.id, sorted(keys)) if keys else {}
        messages = [
            compact_message(m, zone=self.zone, names=names, account_name=device.account_name,
                            max_chars=max_chars, with_conversation=conversation is None)
            for m in items
        ]  # fmt: skip
        answer = pruned({"conversation_id": conversation, "conversation": names.get(conversation or "")})
        answer.update(total=data["total"], messages=messages, next_cursor=data["next_cursor"])
        if data.get("total_capped"):  # at least ``total`` (JUHE_SYNC_SEARCH_COUNT_LIMIT)
            answer["total_capped"] = True
        if "prev_cursor" in data:  # a page around a message: the way back, with the opposite order
            answer["prev_cursor"] = data["prev_cursor"]
        return answer

    def get_contact(self, who: Principal, guid: str, user_id: str) -> dict[str, Any]:
        device = self._device(who, guid)
        user = norm_id(text_param("user_id", user_id))
        if user is None:
            raise InvalidParams("user_id is required")
        found = self.store.contact(device.id, user)
        if found is None:
            raise NotFound(
                f"Contact {user} not found on device {device.guid} (a room member need not be a "
                "contact: list_room_members names them)"
            )
        labels = [lb.get("label_name") or lb.get("name") or lb.get("label_id") for lb in found["labels"]]
        details = {
            key: shorten(value, 200) if isinstance(value, str) else value
            for key, value in found["extra"].items()
            if isinstance(value, str | int | float | bool) and value != ""
        }
        return pruned(
            {
                "id": found["id"],
                "name": found["name"],
                "remark": found["remark"],
                "type": found["type"],
                "corp_id": found["corp_id"],
                "labels": [str(label) for label in labels if label],
                "source": found["source"],
                "deleted": True if found["deleted"] else None,
                "conversation_id": f"S:{found['id']}" if found["message_count"] else None,
                "message_count": found["message_count"],
                "last_message_time": local_time(found["last_message_time"], self.zone),
                "details": dict(list(details.items())[:_DETAILS]),
            }
        )

    def list_room_members(
        self, who: Principal, guid: str, room_id: str, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        device = self._device(who, guid)
        data = self.queries.room_members(device.guid, room_id, 1, limit, cursor)
        room = data["room_id"]
        members = [pruned(localized(m, self.zone)) for m in data["members"]]
        answer = pruned({"room_id": room, "room": self.store.display_names(device.id, [room]).get(room)})
        answer.update(total=data["total"], members=members, next_cursor=data["next_cursor"])
        return answer

    def sync_status(self, who: Principal, guid: str) -> dict[str, Any]:
        device = self._device(who, guid)
        if self.runtime is not None:
            data = self.runtime.sync_status(device.guid)
        else:
            data = self.queries.sync_status(device.guid)
        data["sync"] = {kind: pruned(state) for kind, state in data["sync"].items()}
        return pruned(localized(data, self.zone))
