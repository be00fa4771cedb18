"""Realistic chat data, loaded through juhe-sync's own ingest path (11013 batch events).

Deterministic for a seed. Several devices of very different sizes, thousands of contacts, hundreds
of rooms, Zipf-distributed conversations, two years of messages in time order, mixed types, and
Chinese text with emoji and some Latin words at a realistic length distribution. Planted terms
give searches of known rarity: rare (~0.05% of messages), medium (~1%) and common (>=10%).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from juhe_sync.ingest.envelope import parse_body
from juhe_sync.records import IngestOutcome
from juhe_sync.storage.sqlstore import SQLStore

START = 1_656_633_600  # 2022-07-01T00:00:00Z
SPAN = 2 * 365 * 86400
ACCOUNT_BASE = 1688850000000000

WORDS = [
    "我",
    "你",
    "他",
    "她",
    "是",
    "在",
    "有",
    "不",
    "了",
    "这",
    "那",
    "就",
    "都",
    "也",
    "还",
    "要",
    "会",
    "能",
    "可以",
    "什么",
    "怎么",
    "现在",
    "今天",
    "明天",
    "昨天",
    "时候",
    "一下",
    "一起",
    "已经",
    "好的",
    "谢谢",
    "收到",
    "麻烦",
    "请问",
    "您好",
    "客户",
    "产品",
    "价格",
    "报价",
    "合同",
    "订单",
    "发货",
    "快递",
    "付款",
    "到账",
    "开会",
    "会议",
    "项目",
    "方案",
    "需求",
    "确认",
    "安排",
    "时间",
    "地址",
    "电话",
    "联系",
    "老板",
    "经理",
    "同事",
    "公司",
    "部门",
    "市场",
    "销售",
    "技术",
    "支持",
    "问题",
    "解决",
    "处理",
    "反馈",
    "更新",
    "版本",
    "系统",
    "数据",
    "文件",
    "图片",
    "视频",
    "链接",
    "看看",
    "试试",
    "帮忙",
    "注意",
    "记得",
    "提醒",
    "通知",
    "活动",
    "优惠",
    "折扣",
    "库存",
    "样品",
    "质量",
    "售后",
    "退货",
    "换货",
    "服务",
    "满意",
    "不错",
    "可能",
    "应该",
    "一定",
    "马上",
    "稍等",
    "好吧",
    "哈哈",
    "嗯嗯",
    "对的",
    "没错",
    "周一",
    "周五",
    "下午",
    "上午",
    "晚上",
    "中午",
    "点",
    "分钟",
    "小时",
    "天",
    "月",
    "年",
    "元",
    "块",
    "个",
    "件",
    "台",
    "套",
    "批",
    "次",
    "号",
    "的",
    "吗",
    "呢",
    "吧",
    "啊",
    "哦",
    "呀",
]
EMOJI = ["👍", "😀", "🙏", "😂", "🌹", "👌", "💪", "🎉", "😊", "🤝"]
LATIN = ["OK", "hi", "thanks", "PDF", "Excel", "iPhone", "WiFi", "App", "VIP", "ID", "CRM", "PPT", "email"]

#: term -> (share of text messages carrying it, rarity label)
PLANTED: dict[str, tuple[float, str]] = {
    "鑫": (0.0005, "rare"),
    "锦鲤": (0.0005, "rare"),
    "区块链": (0.0005, "rare"),
    "量子计算机": (0.0005, "rare"),
    "kubernetes": (0.0005, "rare"),
    "鹏": (0.01, "medium"),
    "发票": (0.01, "medium"),
    "小程序": (0.01, "medium"),
    "售后服务部": (0.01, "medium"),
    "invoice": (0.01, "medium"),
    "我们": (0.12, "common"),
    "没问题": (0.10, "common"),
    "辛苦您了呀": (0.10, "common"),
    "ok": (0.07, "common"),  # on top of the "OK" that LATIN already puts in ~4% of texts
}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


@dataclass
class Device:
    guid: str
    account: str
    share: float
    peers: list[str]
    rooms: list[str]


def devices(rng: random.Random, n_devices: int, contacts: int, rooms: int) -> list[Device]:
    shares = [0.55, 0.25, 0.12, 0.08][:n_devices] or [1.0]
    total = sum(shares)
    out = []
    for i, share in enumerate(shares):
        peers = [f"7881{rng.randrange(10**11, 10**12)}" for _ in range(contacts // n_devices)]
        peers += [f"1688{rng.randrange(10**11, 10**12)}" for _ in range(max(5, contacts // n_devices // 20))]
        out.append(
            Device(
                guid=f"bench-device-{i + 1:02d}",
                account=str(ACCOUNT_BASE + i + 1),
                share=share / total,
                peers=peers,
                rooms=[f"1069{rng.randrange(10**12, 10**13)}" for _ in range(rooms // n_devices)],
            )
        )
    return out


def _zipf_index(rng: random.Random, n: int) -> int:
    # conversations follow a heavy-tailed distribution: a few very busy ones, a long tail
    return min(n - 1, int(n * rng.random() ** 3.0))


def _text(rng: random.Random) -> str:
    length = max(1, int(rng.lognormvariate(2.0, 0.8)))  # median ~7 words, long tail
    parts = []
    for _ in range(length):
        r = rng.random()
        if r < 0.06:
            parts.append(rng.choice(EMOJI))
        elif r < 0.12:
            parts.append(rng.choice(LATIN) + " ")
        else:
            parts.append(WORDS[_zipf_index(rng, len(WORDS))])
    for term, (share, _) in PLANTED.items():
        if share and rng.random() < share:
            parts.insert(rng.randrange(len(parts) + 1), term)
    if rng.random() < 0.6:
        parts.append(rng.choice("，。！？～"))
    return "".join(parts)


def _content(rng: random.Random, msg_type: int, n: int) -> str:
    if msg_type == 2:
        return _text(rng)
    if msg_type == 1011:
        return f'"{rng.choice(SURNAMES)}{rng.choice(GIVEN)}"邀请"{rng.choice(SURNAMES)}{rng.choice(GIVEN)}"加入了群聊'
    media = {"file_id": f"306b0201020464{n:016x}", "size": rng.randrange(1000, 5_000_000), "md5": f"{n:032x}"}
    if msg_type == 8:
        media["file_name"] = f"文件{n}.pdf"
    return json.dumps(media, ensure_ascii=False)


_TYPES = [2] * 85 + [5] * 5 + [8] * 3 + [6] * 2 + [1011] * 2 + [4, 7, 10]


def messages(
    seed: int, total: int, n_devices: int = 4, contacts: int = 4000, rooms: int = 300
) -> Iterator[tuple[str, dict]]:
    """(guid, message object) in send-time order."""
    rng = random.Random(seed)
    devs = devices(rng, n_devices, contacts, rooms)
    weights = [d.share for d in devs]
    step = SPAN / total
    for n in range(total):
        dev = rng.choices(devs, weights)[0]
        sendtime = START + int(n * step)
        in_room = rng.random() < 0.4
        outbound = rng.random() < 0.3
        msg_type = rng.choice(_TYPES)
        peer = dev.peers[_zipf_index(rng, len(dev.peers))]
        sender = dev.account if outbound else peer
        item = {
            "seq": str(10_000_000 + n),
            "id": str(20_000_000 + n),
            "appinfo": f"BENCH{seed}x{n:09d}",
            "sender": sender,
            "receiver": "0" if in_room else (peer if outbound else dev.account),
            "roomid": dev.rooms[_zipf_index(rng, len(dev.rooms))] if in_room else "0",
            "sendtime": sendtime,
            "sender_name": f"{SURNAMES[int(sender) % len(SURNAMES)]}{GIVEN[int(sender) // 7 % len(GIVEN)]}",
            "content_type": msg_type,
            "referid": "0",
            "flag": 0,
            "content": _content(rng, msg_type, n),
            "at_list": [],
            "quote_content": "",
            "quote_appinfo": "",
            "send_flag": 1 if outbound else 0,
            "msg_type": msg_type,
        }
        yield dev.guid, item


def load(
    store: SQLStore,
    seed: int,
    total: int,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
    **kw: int,
) -> int:
    """Ingest ``total`` generated messages as 11013 batch events; returns messages stored."""
    pending: dict[str, list[dict]] = {}
    futures: list[Future[IngestOutcome]] = []
    stored = 0

    def flush(guid: str) -> None:
        items = pending.pop(guid)
        raw = json.dumps({"guid": guid, "notify_type": 11013, "data": items}, ensure_ascii=False)
        futures.append(store.submit_event(parse_body(raw), raw, items[-1]["sendtime"]))

    def drain(keep: int) -> None:
        nonlocal stored
        while len(futures) > keep:
            out = futures.pop(0).result()
            stored += out.messages_added

    for guid, item in messages(seed, total, **kw):
        pending.setdefault(guid, []).append(item)
        if len(pending[guid]) >= batch:
            flush(guid)
            drain(8)
            if progress is not None:
                progress(batch)
    for guid in list(pending):
        flush(guid)
    drain(0)
    return stored
