"""Keyword search on PostgreSQL: the count first, then the cheaper way to the page.

The GIN index of n-grams (:mod:`juhe_sync.storage.search`) holds every candidate of a keyword, but
left to itself the planner chose badly both ways (measured on 200,000 messages, see BENCHMARKS.md).
It estimates the rows holding *all* the n-grams of a longer keyword as if they were independent (9
for a phrase in 9,410 messages), so it read and sorted every match to find the newest 50; and for
a character in 0.8% of the messages it walked 9,000 rows newest first where the index had the 910.
So the search counts first (with the scope's size, in one statement), and then knows how common
the keyword is:

- few matches: the page comes from the index too, reading at most those rows;
- many: the page is looked for newest first (oldest first, ascending) through the scope's id
  index, reading a bounded window of rows; if the window did not hold the page (the matches are
  old, say), from the index after all.

A count reads each match's table page (bitmap scans of PostgreSQL 15 no longer skip pages that
are all visible), so it is what a common keyword costs; the query's count limit bounds that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from juhe_sync.records import MessageQuery, Page
from juhe_sync.storage import reads, search
from juhe_sync.storage.sql import id_range

#: A page is looked for through the scope's id index only when the index holds more matches than
#: this (a bitmap page reads them all).
WALK_ABOVE = 2_000
#: A walk reads at most this many times the rows it expects to need (at least WALK_LEAST), and is
#: not tried when that is more than WALK_MOST: the matches are too rare for it.
WALK_SLACK = 4
WALK_LEAST = 1_000
WALK_MOST = 50_000

#: A capped count is a LIMIT query, for which the planner likes a sequential scan (it expects to
#: stop early, and reads the whole table when the matches are old): the GIN index counts instead.
_INDEX_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off"


class Conditions(NamedTuple):
    """A keyword search's conditions: the keyword's (``match``) and the time range's (``span``)."""

    match: str
    match_params: list[Any]
    span: str
    span_params: list[Any]

    @property
    def where(self) -> tuple[str, list[Any]]:
        return f"{self.match} AND {self.span}", [*self.match_params, *self.span_params]


class Scope(NamedTuple):
    """Where a search looks: a device or one of its conversations, and the statement of its size."""

    column: str
    id: int
    size_sql: str


def conditions(query: MessageQuery, conversation_id: int | None) -> Conditions:
    assert query.keyword
    codes, verify = search.query_grams(query.device_id, conversation_id, query.keyword)
    match, params = "grams @> ?::bigint[]", list[Any]([codes])
    if search.shares_grams(query.device_id):
        # A check on the rows the grams found, not another index for the planner to combine: + 0.
        match += " AND device_id + 0 = ?"
        params.append(query.device_id)
    if verify:
        how, needle = search.text_check(search.fold(query.keyword))
        match += " AND strpos(content, ?) > 0" if how == "strpos" else " AND content ~ ?"
        params.append(needle)
    if query.start is None and query.end is None:
        return Conditions(match, params, "TRUE", [])
    return Conditions(match, params, "id BETWEEN ? AND ?", list(id_range(query.start, query.end)))


def scope(query: MessageQuery, conversation_id: int | None) -> Scope:
    if conversation_id is None:
        return Scope("device_id", query.device_id, "SELECT messages_count FROM devices WHERE id = ?")
    return Scope("conversation_id", conversation_id, "SELECT message_count FROM conversations WHERE id = ?")


def messages(conn: Any, query: MessageQuery, conversation_id: int | None) -> Page:
    found = conditions(query, conversation_id)
    where, params = found.where
    if not query.count:  # an export's pages: nothing counted to choose by
        return reads.message_page(conn, "messages", "id", where, params, query)
    within = scope(query, conversation_id)
    total, capped, size = _count(conn, query, within, where, params)
    ids: list[int] | None = [] if total == 0 else None
    if ids is None and (capped or total > WALK_ABOVE):
        ids = _walk(conn, query, within, (total, capped, size), found)
    if ids is None:
        ids = _page(conn, query, where, params)
    return reads.page_of(conn, ids, total, capped, query)


def _count(
    conn: Any, query: MessageQuery, within: Scope, where: str, params: list[Any]
) -> tuple[int, bool, int]:
    """(matches, whether counting stopped at the limit, messages in the search's scope)."""
    sql, sql_params = count_sql(query, within, where, params)
    if query.count_limit is None:
        total, size = conn.execute(sql, sql_params).fetchone()
    else:
        with conn.raw.transaction():  # SET LOCAL ends with it, whatever happens
            conn.execute(_INDEX_ONLY)
            total, size = conn.execute(sql, sql_params).fetchone()
    return (*reads.capped_total(int(total), query.count_limit), int(size or 0))


def count_sql(
    query: MessageQuery, within: Scope, where: str, params: list[Any]
) -> tuple[str, tuple[Any, ...]]:
    """The statement counting the matches (one past the limit, if any) and the scope's size."""
    hits, hits_params = f"SELECT 1 FROM messages WHERE {where}", list(params)
    if query.count_limit is not None:
        hits, hits_params = f"{hits} LIMIT ?", [*hits_params, query.count_limit + 1]
    return f"SELECT (SELECT count(*) FROM ({hits}) AS hits), ({within.size_sql})", (*hits_params, within.id)


def _page(conn: Any, query: MessageQuery, where: str, params: list[Any]) -> list[int]:
    """The page from the GIN index: every match is read, sorted by id (``id + 0``: not an index walk
    of ``id``, where a rare keyword's page may be thousands of rows away)."""
    page_where, page_params = reads.keyset(where, params, "id", query.after, query.ascending)
    return [r[0] for r in conn.execute(*_page_sql(query, page_where, page_params)).fetchall()]


def _page_sql(query: MessageQuery, where: str, params: list[Any]) -> tuple[str, tuple[Any, ...]]:
    order = "ASC" if query.ascending else "DESC"
    sql = f"SELECT id FROM messages WHERE {where} ORDER BY id + 0 {order} LIMIT ? OFFSET ?"
    return sql, (*params, query.limit, reads.page_offset(query))


def _walk(
    conn: Any, query: MessageQuery, within: Scope, counted: tuple[int, bool, int], found: Conditions
) -> list[int] | None:
    """The page through the scope's id index, or None when :func:`walk_window` says not to or the
    window read did not hold a whole page."""
    window = walk_window(query, counted)
    if window is None:
        return None
    order = "ASC" if query.ascending else "DESC"
    inner, inner_params = reads.keyset(
        f"{within.column} = ? AND {found.span}",
        [within.id, *found.span_params],
        "id",
        query.after,
        query.ascending,
    )
    sql = (
        f"SELECT id FROM (SELECT id, device_id, grams, content FROM messages WHERE {inner} ORDER BY id {order} "
        f"LIMIT ?) AS w WHERE {found.match} ORDER BY id {order} LIMIT ? OFFSET ?"
    )
    params = (*inner_params, window, *found.match_params, query.limit, reads.page_offset(query))
    ids = [r[0] for r in conn.execute(sql, params).fetchall()]
    return ids if len(ids) == query.limit else None


def walk_window(query: MessageQuery, counted: tuple[int, bool, int]) -> int | None:
    """Rows a walk may read for the page: a few times what it expects to need if the matches are
    spread evenly, or None when that is more than the GIN index holds (a capped count is a floor:
    the index holds more, often far more) or more than :data:`WALK_MOST`."""
    total, capped, size = counted
    expected = (query.limit + reads.page_offset(query)) * max(size, total) / total
    if (expected >= total and not capped) or expected * WALK_SLACK > WALK_MOST:
        return None
    return max(int(expected * WALK_SLACK), WALK_LEAST)


def plans(conn: Any, query: MessageQuery) -> list[str]:
    """EXPLAIN of the count and of the GIN index's page, as :func:`messages` runs them."""
    where, params = conditions(query, None).where
    sqls = [count_sql(query, scope(query, None), where, params), _page_sql(query, where, params)]
    with conn.raw.transaction():
        if query.count_limit is not None:
            conn.execute(_INDEX_ONLY)
        return ["\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, p).fetchall()) for sql, p in sqls]
