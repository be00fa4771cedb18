"""The simulated SaaS's data: one generated device per GUID, and how it changes over time.

The shapes follow the fixtures of JUHEBOT.md §12 field for field. Where the protocol is silent the
simulator makes the same decisions juhe-sync documents: contacts carry a change sequence number
and ``/contact/sync_contact`` returns those changed after ``seq`` in that order; a contact deleted
upstream comes back once in that stream with ``contact_type`` 2049 (ContactType Del, §9); ``get_room_list`` lists only the
rooms the account owns (§12: the platform may not return the others).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲峰建国志文辉鹏飞宇浩然子涵欣怡雨晨思远佳琪梓萱"
)
_COMPANIES = [
    "宁波海拓",
    "星河科技",
    "杭州云帆",
    "上海启明",
    "深圳前海",
    "苏州工业园",
    "北京中关村",
    "广州天河",
]
_ROOM_WORDS = [
    "客户服务群",
    "项目交付对接群",
    "售后支持",
    "VIP客户群",
    "采购沟通群",
    "技术交流群",
    "区域销售群",
]


@dataclass
class Contact:
    user_id: str
    name: str
    remark: str
    avatar: str
    corp_id: str
    labels: list[str]
    seq: int
    deleted: bool = False

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "user_id": self.user_id,
            "name": self.name,
            "real_name": self.name if self.user_id.startswith("168") else "",
            "avatar": self.avatar,
            "corp_id": self.corp_id,
            "gender": int(self.user_id[-1]) % 2 + 1,
            "contact_type": 2049 if self.deleted else 2057,  # ContactType Del / Add (§9)
            "extend_info": {
                "remark": self.remark,
                "company_remark": "",
                "desc": "",
                "phone_list": [],
                "label_info_list": [
                    {"label_id": label, "label_groupid": "14073750007654321", "corp_or_vid": self.corp_id,
                     "business_type": 0}
                    for label in self.labels
                ],
            },
        }  # fmt: skip
        return item


@dataclass
class Member:
    user_id: str
    nickname: str
    room_nickname: str
    join_time: int
    inviter: str


@dataclass
class Room:
    room_id: str
    name: str
    owner: str
    create_time: int
    version: int
    owned: bool
    members: dict[str, Member] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {"roomid": self.room_id, "roomname": self.name, "owner": self.owner, "create_time": self.create_time,
                "member_count": len(self.members), "notice": ""}  # fmt: skip

    def detail(self) -> dict[str, Any]:
        members = [
            {"uin": m.user_id, "nickname": m.nickname, "room_nickname": m.room_nickname, "join_time": m.join_time,
             "invite_uin": m.inviter}
            for m in self.members.values()
        ]  # fmt: skip
        return {"info": self.info(), "members": members, "version": self.version}

    def list_item(self) -> dict[str, Any]:
        return {"roomid": self.room_id, "roomname": self.name, "create_user": self.owner,
                "member_count": len(self.members), "create_time": self.create_time, "version": self.version}  # fmt: skip


class Device:
    """One simulated account with its contacts and rooms."""

    def __init__(self, guid: str, seed: int, contacts: int, rooms: int, max_members: int = 40):
        self.guid = guid
        self.rng = random.Random(seed)
        self.corp_id = "19703250" + f"{seed % 10**8:08d}"
        self.account = "16888500" + f"{self.rng.randrange(10**8):08d}"
        self.account_name = self._name()
        self.seq = 8_600_000
        self.contacts: dict[str, Contact] = {}
        self.rooms: dict[str, Room] = {}
        self.next_id = 1
        self.clock = 1_717_000_000
        #: Every message the device has had, for ``/sync/sync_msg`` (delivered as callbacks or not).
        self.messages: list[dict[str, Any]] = []
        for _ in range(contacts):
            self.add_contact()
        people = [c.user_id for c in self.contacts.values()]
        for i in range(rooms):
            self.add_room(owned=i % 3 != 2, people=people, max_members=max_members)

    # --- generation ----------------------------------------------------------------------

    def _name(self) -> str:
        return self.rng.choice(_SURNAMES) + "".join(
            self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2)))
        )

    def _id(self, prefix: str, width: int) -> str:
        self.next_id += 1
        return prefix + f"{self.next_id * 7919 % 10 ** (width - len(prefix)):0{width - len(prefix)}d}"

    def add_contact(self) -> Contact:
        internal = self.rng.random() < 0.2
        user_id = self._id("168885" if internal else "788130", 16)
        name = self._name()
        company = self.rng.choice(_COMPANIES)
        self.seq += 1
        contact = Contact(
            user_id=user_id,
            name=name,
            remark="" if internal or self.rng.random() < 0.5 else f"{name}-{company}",
            avatar=f"https://wework.qpic.cn/wwpic/{user_id}/0",
            corp_id=self.corp_id if internal else "0",
            labels=[] if self.rng.random() < 0.7 else ["14073750001234567"],
            seq=self.seq,
        )
        self.contacts[user_id] = contact
        return contact

    def add_room(self, *, owned: bool, people: list[str], max_members: int) -> Room:
        room_id = self._id("1069", 17)
        self.clock += 3600
        owner = self.account if owned else self.rng.choice(people)
        room = Room(room_id, f"{self.rng.choice(_COMPANIES)}-{self.rng.choice(_ROOM_WORDS)}", owner, self.clock,
                    version=1, owned=owned)  # fmt: skip
        for user_id in {
            self.account,
            owner,
            *self.rng.sample(people, min(len(people), self.rng.randint(2, max_members))),
        }:
            self._join(room, user_id)
        self.rooms[room_id] = room
        return room

    def _join(self, room: Room, user_id: str) -> None:
        contact = self.contacts.get(user_id)
        nickname = self.account_name if user_id == self.account else (contact.name if contact else user_id)
        room.members[user_id] = Member(
            user_id, nickname, "", room.create_time, room.owner if user_id != room.owner else "0"
        )

    # --- changes over time ----------------------------------------------------------------

    def mutate(self, changes: int) -> list[dict[str, Any]]:
        """Apply ``changes`` random upstream changes; returns the callbacks the platform would push."""
        events: list[dict[str, Any]] = []
        live = [c for c in self.contacts.values() if not c.deleted]
        for _ in range(changes):
            roll = self.rng.random()
            if roll < 0.3:
                contact = self.add_contact()
                events.append({"guid": self.guid, "notify_type": 2131, "data": {"user_id": contact.user_id}})
            elif roll < 0.5 and live:
                contact = self.rng.choice(live)
                self.seq += 1
                contact.remark, contact.seq = f"{contact.name}-{self.rng.choice(_COMPANIES)}-改", self.seq
                events.append({"guid": self.guid, "notify_type": 2131, "data": {"user_id": contact.user_id}})
            elif roll < 0.6 and live:
                contact = self.rng.choice(live)
                live.remove(contact)
                self.seq += 1
                contact.deleted, contact.seq = True, self.seq  # rooms keep them: a friendship ended
                events.append({"guid": self.guid, "notify_type": 2131, "data": {"user_id": contact.user_id}})
            elif roll < 0.8:
                room = self.rng.choice(list(self.rooms.values()))
                room.name = room.name.split("·")[0] + f"·{self.rng.randint(1, 99)}"
                room.version += 1
                events.append({"guid": self.guid, "notify_type": 2118, "data": {"room_id": room.room_id}})
            else:
                room = self.rng.choice(list(self.rooms.values()))
                candidates = [c.user_id for c in live if c.user_id not in room.members]
                if candidates and (self.rng.random() < 0.6 or len(room.members) < 4):
                    self._join(room, self.rng.choice(candidates))
                    notify = 1002
                else:
                    leaving = [u for u in room.members if u not in (room.owner, self.account)]
                    if not leaving:
                        continue
                    del room.members[self.rng.choice(leaving)]
                    notify = 1003
                room.version += 1
                events.append({"guid": self.guid, "notify_type": notify, "data": {"room_id": room.room_id}})
        return events

    def message(self, n: int) -> dict[str, Any]:
        """A plausible 11010 message item (private or room) numbered ``n``."""
        self.clock += 7
        room = self.rng.choice(list(self.rooms.values())) if self.rng.random() < 0.4 else None
        sender = self.rng.choice(list(room.members) if room else [c.user_id for c in self.contacts.values()])
        item = {
            "seq": str(7_000_000 + n), "id": str(1_000_000 + n), "appinfo": f"SIM{self.guid[:8]}{n:010d}",
            "sender": sender, "receiver": "0" if room else self.account, "roomid": room.room_id if room else "0",
            "sendtime": self.clock, "sender_name": self.contacts[sender].name if sender in self.contacts else "",
            "content_type": 2, "referid": "0", "flag": 16777216, "content": f"模拟消息 {n}：报价单已发送，请查收。",
            "at_list": [], "quote_content": "", "quote_appinfo": "", "send_flag": 0, "msg_type": 2,
        }  # fmt: skip
        self.messages.append(item)
        return item

    def sync_messages(self, sync_key: str, limit: int) -> dict[str, Any] | None:
        """``/sync/sync_msg``: messages after ``sync_key`` (a seq); None when the key is refused."""
        if not sync_key.isdigit() or sync_key == "0":
            return None
        after = [m for m in self.messages if int(m["seq"]) > int(sync_key)]
        page = after[: max(1, limit)]
        return {"msg_list": page, "max_sync_key": page[-1]["seq"] if page else sync_key,
                "continue_flag": int(len(after) > len(page))}  # fmt: skip

    # --- the pull API ---------------------------------------------------------------------

    def contact_page(self, seq: str, limit: int) -> dict[str, Any]:
        after = int(seq) if seq.isdigit() else 0
        changed = sorted((c for c in self.contacts.values() if c.seq > after), key=lambda c: c.seq)
        page = changed[: max(1, limit)]
        last = page[-1].seq if page else (after or self.seq)
        return {"contact_list": [c.item() for c in page], "last_seq": str(last)}

    def room_list(self, start: int, limit: int) -> dict[str, Any]:
        owned = [r for r in self.rooms.values() if r.owned]
        chunk = owned[start : start + max(1, limit)]
        return {"roomdata": {"datas": [r.list_item() for r in chunk]}, "total": len(owned),
                "next_start": start + len(chunk)}  # fmt: skip

    def room_details(self, room_ids: list[str]) -> dict[str, Any]:
        return {"roominfos": [self.rooms[r].detail() for r in room_ids if r in self.rooms]}

    def sync_room(self, room_id: str, version: int) -> dict[str, Any]:
        room = self.rooms.get(room_id)
        if room is None or (version and version >= room.version):
            return {"roominfos": []}
        return {"roominfos": [room.detail()]}

    def profile(self) -> dict[str, Any]:
        return {"persons": [{"user_id": self.account, "name": self.account_name, "real_name": self.account_name,
                             "corp_id": self.corp_id, "gender": 1, "avatar": f"https://wework.qpic.cn/wwpic/{self.account}/0"}]}  # fmt: skip

    def truth(self, seen_rooms: set[str] | None = None) -> dict[str, Any]:
        """What a complete sync must leave in juhe-sync: the contacts, and the rooms it can know of
        (those ``get_room_list`` lists, and ``seen_rooms``, e.g. from messages)."""
        seen = seen_rooms or set()
        return {
            "account": self.account,
            "contacts": {c.user_id: {"name": c.name, "remark": c.remark} for c in self.contacts.values() if not c.deleted},
            "rooms": {r.room_id: {"name": r.name, "owner": r.owner, "members": sorted(r.members)}
                      for r in self.rooms.values() if r.owned or r.room_id in seen},
        }  # fmt: skip
