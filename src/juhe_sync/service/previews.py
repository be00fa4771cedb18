"""What a conversation list shows of its last message: the text, cut short, or a label for
anything that is not text (as the WeCom and WeChat clients show it)."""

from __future__ import annotations

from typing import Any

#: Longest preview text, in characters.
PREVIEW_CHARS = 80

#: Message ``type`` -> its label. Text-like types show their text instead.
LABELS = {
    "image": "[图片]",
    "voice": "[语音]",
    "video": "[视频]",
    "file": "[文件]",
    "location": "[位置]",
    "link": "[链接]",
    "hongbao": "[红包]",
    "gif": "[动画表情]",
    "card": "[名片]",
    "weapp": "[小程序]",
    "mixed": "[图文]",
    "channels": "[视频号]",
    "text_card": "[卡片]",
    "merged": "[聊天记录]",
    "revoke": "[撤回]",
    "read_report": "[已读]",
    "unknown": "[消息]",
}


def preview(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` (the last message of a conversation) with ``text`` and without ``content``."""
    out = {k: v for k, v in message.items() if k != "content"}
    label = LABELS.get(message["type"])
    if message["revoked"]:
        out["text"] = "[已撤回]"
    elif label is None:  # text and system messages
        text = " ".join(str(message["content"] or "").split())
        out["text"] = text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
    else:
        out["text"] = label
    return out
