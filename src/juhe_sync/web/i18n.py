"""The viewer's words in Chinese and English, and which language a browser gets."""

from __future__ import annotations

LANGUAGES = {"zh": "中文", "en": "English"}

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "juhe-sync 消息查看器",
        "sign_in": "登录",
        "sign_in_hint": "输入 API 令牌（JUHE_SYNC_API_TOKEN 或 juhe-sync token create 生成的令牌）。",
        "token": "API 令牌",
        "sign_out": "退出",
        "bad_token": "令牌无效",
        "device": "设备",
        "no_devices": "还没有设备：把 SaaS 的回调地址设为本服务的 /callback。",
        "conversations": "会话",
        "filter_conversations": "筛选会话",
        "all": "全部",
        "private": "单聊",
        "rooms": "群聊",
        "no_conversations": "没有会话",
        "messages": "消息",
        "search": "搜索消息",
        "search_in_conversation": "仅当前会话",
        "from": "从",
        "to": "到",
        "go": "搜索",
        "close_results": "清除",
        "results": "搜索结果",
        "no_results": "没有找到消息",
        "open_in_context": "在会话中查看",
        "load_older": "加载更早的消息",
        "load_newer": "加载更新的消息",
        "back": "返回",
        "details": "详情",
        "members": "群成员",
        "no_members": "没有成员信息（需要拉取同步）",
        "message_count": "消息数",
        "sync_status": "同步状态",
        "sync_now": "立即同步",
        "sync_queued": "已开始同步",
        "online": "在线",
        "offline": "离线",
        "unknown_state": "状态未知",
        "status_idle": "空闲",
        "status_syncing": "同步中",
        "status_error": "出错",
        "status_offline": "离线",
        "revoked": "已撤回",
        "unsupported": "暂不支持的消息类型",
        "raw": "原始数据",
        "image": "图片",
        "voice": "语音",
        "video": "视频",
        "file": "文件",
        "location": "位置",
        "link": "链接",
        "hongbao": "红包",
        "gif": "表情",
        "card": "名片",
        "weapp": "小程序",
        "mixed": "图文消息",
        "channels": "视频号",
        "text_card": "卡片消息",
        "merged": "聊天记录",
        "read_report": "已读回执",
        "revoke": "撤回了一条消息",
        "quote": "引用",
        "seconds": "秒",
        "error": "出错了",
        "select_conversation": "选择一个会话查看消息",
        "language": "Language",
    },
    "en": {
        "title": "juhe-sync viewer",
        "sign_in": "Sign in",
        "sign_in_hint": "Enter an API token (JUHE_SYNC_API_TOKEN, or one made with juhe-sync token create).",
        "token": "API token",
        "sign_out": "Sign out",
        "bad_token": "That token is not valid",
        "device": "Device",
        "no_devices": "No devices yet: point the SaaS's callback URL at this server's /callback.",
        "conversations": "Conversations",
        "filter_conversations": "Filter conversations",
        "all": "All",
        "private": "Private",
        "rooms": "Rooms",
        "no_conversations": "No conversations",
        "messages": "Messages",
        "search": "Search messages",
        "search_in_conversation": "This conversation only",
        "from": "From",
        "to": "To",
        "go": "Search",
        "close_results": "Clear",
        "results": "Results",
        "no_results": "No messages found",
        "open_in_context": "Show in conversation",
        "load_older": "Load older messages",
        "load_newer": "Load newer messages",
        "back": "Back",
        "details": "Details",
        "members": "Members",
        "no_members": "No members known (filled by pull sync)",
        "message_count": "Messages",
        "sync_status": "Sync status",
        "sync_now": "Sync now",
        "sync_queued": "Sync started",
        "online": "Online",
        "offline": "Offline",
        "unknown_state": "State unknown",
        "status_idle": "Idle",
        "status_syncing": "Syncing",
        "status_error": "Error",
        "status_offline": "Offline",
        "revoked": "Revoked",
        "unsupported": "Unsupported message type",
        "raw": "Raw data",
        "image": "Image",
        "voice": "Voice",
        "video": "Video",
        "file": "File",
        "location": "Location",
        "link": "Link",
        "hongbao": "Red packet",
        "gif": "Sticker",
        "card": "Contact card",
        "weapp": "Mini program",
        "mixed": "Mixed message",
        "channels": "Channels",
        "text_card": "Card",
        "merged": "Chat history",
        "read_report": "Read receipt",
        "revoke": "Recalled a message",
        "quote": "Quote",
        "seconds": "s",
        "error": "Something went wrong",
        "select_conversation": "Pick a conversation to read its messages",
        "language": "语言",
    },
}


def pick_language(asked: str | None, cookie: str | None, accept_language: str | None) -> str:
    """``?lang=``, else the switch's cookie, else the first of ``Accept-Language`` we speak;
    Chinese when nothing says."""
    for choice in (asked, cookie):
        if choice in LANGUAGES:
            return choice
    ranked = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
    return "zh"
