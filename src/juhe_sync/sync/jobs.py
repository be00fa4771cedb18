"""Pull sync jobs: contacts, rooms with members, the account and (optionally) messages, from the SaaS.

A job runs for one device under that device's work lease (one process at a time, across hosts),
commits each page together with its position (:mod:`juhe_sync.storage.pulls`), and records its
outcome in ``sync_state``, which ``GET /api/sync-status`` reports. Callbacks never move these
positions: only what the pull API returned does.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from juhe_sync import metrics
from juhe_sync.config import Settings
from juhe_sync.errors import InvalidParams
from juhe_sync.ids import int_or_none
from juhe_sync.records import ContactRow, RoomDetail, RoomRow
from juhe_sync.saas import protocol
from juhe_sync.saas.client import SaasClient, client_from_settings
from juhe_sync.saas.protocol import SaasError
from juhe_sync.storage import pulls
from juhe_sync.storage.leases import DEFAULT_TTL, device_lease
from juhe_sync.storage.sqlstore import SQLStore
from juhe_sync.timeutil import now_seconds

log = logging.getLogger("juhe_sync.sync")

T = TypeVar("T")

#: Progress callback: (kind, items done so far, total if known).
Progress = Callable[[str, int, int | None], None]

CONTACT_PAGE = 100
ROOM_PAGE = 100
ROOM_DETAIL_CHUNK = 20
MESSAGE_PAGE = 100


class SyncStopped(BaseException):
    """The process is shutting down: the run stops between two pages and stays resumable
    (a BaseException, so that no job records it as a failure)."""


@dataclass(slots=True)
class SyncReport:
    contacts: int = 0
    rooms: int = 0
    members: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)


class Syncer:
    def __init__(
        self,
        store: SQLStore,
        client: SaasClient,
        *,
        sync_messages: bool = False,
        lease_ttl: float = DEFAULT_TTL,
    ):
        self.store = store
        self.client = client
        #: A dead process's lease frees itself after this many seconds; then its run can resume.
        self.lease_ttl = lease_ttl
        #: Gap recovery with ``/sync/sync_msg`` (off by default: the platform deprecates it).
        self.sync_messages = sync_messages
        #: Set on shutdown: runs stop before their next call to the SaaS.
        self.stopping = threading.Event()

    def _call(self, guid: str, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.stopping.is_set():
            raise SyncStopped()
        return self.client.call(guid, path, data)

    @classmethod
    def from_settings(cls, store: SQLStore, settings: Settings) -> Syncer:
        """A syncer with its own SaaS client, as configured (close it with :meth:`close`)."""
        return cls(
            store,
            client_from_settings(settings),
            sync_messages=settings.sync_messages,
            lease_ttl=settings.lease_ttl,
        )

    def close(self) -> None:
        self.client.close()

    # --- plumbing --------------------------------------------------------------------------

    def _write(self, guid: str, fn: Callable[[Any], T]) -> T:
        return self.store.pull_write(guid, fn)

    def _device_id(self, guid: str) -> int:
        device = self.store.device(guid)
        if device is None:
            # A device first seen by a pull: create it, as a callback would have.
            device = self.store.ensure_device(guid)
        assert device is not None
        return device.id

    def _run(
        self, guid: str, device_id: int, kind: str, full: bool, body: Callable[[pulls.SyncRun], None]
    ) -> None:
        run = self._write(guid, lambda conn: pulls.begin(conn, device_id, kind, full))
        try:
            body(run)
        except SyncStopped:
            metrics.SYNC_RUNS.labels(kind, "stopped").inc()
            raise
        except Exception as exc:
            metrics.SYNC_RUNS.labels(kind, "error").inc()
            message = str(exc) if isinstance(exc, SaasError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s sync of %s failed: %s", kind, guid, message)
            self._write(guid, lambda conn: pulls.fail(conn, device_id, kind, message))
            raise
        metrics.SYNC_RUNS.labels(kind, "ok").inc()

    # --- jobs ------------------------------------------------------------------------------

    def sync(self, guid: str, *, full: bool = False, progress: Progress | None = None) -> SyncReport:
        """Profile (when the account is unknown), contacts and rooms of ``guid``, under its lease.
        Each kind runs even if another failed; the report lists the failures."""
        if not guid:
            raise InvalidParams("guid is required")
        device_id = self._device_id(guid)
        report = SyncReport()
        with device_lease(self.store, device_id, "sync", ttl=self.lease_ttl):
            jobs = [("profile", self._profile), ("contacts", self._contacts), ("rooms", self._rooms)]
            if self.sync_messages:
                jobs.append(("messages", self._messages))
            for kind, job in jobs:
                try:
                    job(guid, device_id, full, report, progress)
                except Exception as exc:  # recorded in sync_state by _run
                    report.errors.append(f"{kind}: {exc}")
        return report

    def sync_contacts(self, guid: str, *, full: bool = False) -> SyncReport:
        device_id = self._device_id(guid)
        report = SyncReport()
        with device_lease(self.store, device_id, "sync", ttl=self.lease_ttl):
            self._contacts(guid, device_id, full, report, None)
        return report

    def refresh_rooms(self, guid: str, room_ids: list[str]) -> SyncReport:
        """``/room/sync_room_info`` from each room's stored version (2118, member changes)."""
        device_id = self._device_id(guid)
        report = SyncReport()

        def body(run: pulls.SyncRun) -> None:
            versions = self.store.read(lambda conn: pulls.room_versions(conn, device_id))
            for room_id in room_ids:
                version = versions.get(room_id) or 0
                data = self._call(guid, "/room/sync_room_info", {"room_id": room_id, "version": version})
                details = protocol.room_details(data)
                if details:
                    self._write(
                        guid,
                        functools.partial(pulls.store_room_details, device_id=device_id, details=details),
                    )
                    report.rooms += len(details)
                    report.members += sum(len(d.members or ()) for d in details)
            self._write(guid, lambda conn: pulls.finish(conn, device_id, "room_changes"))

        with device_lease(self.store, device_id, "sync", ttl=self.lease_ttl):
            self._run(guid, device_id, "room_changes", False, body)
        return report

    def _profile(
        self, guid: str, device_id: int, full: bool, report: SyncReport, progress: Progress | None
    ) -> None:
        device = self.store.device(guid)
        if device is not None and device.account_id and not full:
            return

        def body(run: pulls.SyncRun) -> None:
            found = protocol.profile(self._call(guid, "/user/get_profile"))
            if found is not None:
                self._write(guid, lambda conn: pulls.store_profile(conn, device_id, found))
            self._write(guid, lambda conn: pulls.finish(conn, device_id, "profile"))

        self._run(guid, device_id, "profile", full, body)

    def _contacts(
        self, guid: str, device_id: int, full: bool, report: SyncReport, progress: Progress | None
    ) -> None:
        def body(run: pulls.SyncRun) -> None:
            corp = self.store.device(guid).corp_id  # type: ignore[union-attr]
            seq = run.cursor or ""
            done = run.done
            generation = run.generation if run.full else None
            while True:
                data = self._call(guid, "/contact/sync_contact", {"seq": seq, "limit": CONTACT_PAGE})
                items, last_seq = protocol.contact_page(data)
                rows = [r for r in (protocol.contact_row(i, corp) for i in items) if r is not None]
                done += len(rows)
                next_seq = last_seq if last_seq is not None else seq

                def page(
                    conn: Any, rows: list[ContactRow] = rows, cursor: str = next_seq, n: int = done
                ) -> None:
                    pulls.store_contacts(conn, device_id, rows, generation)
                    pulls.progress(conn, device_id, "contacts", cursor, n)

                self._write(guid, page)
                report.contacts += len(rows)
                if progress:
                    progress("contacts", done, None)
                # §12: no has-more flag; the end is an empty page or a cursor that stops moving.
                if not items or next_seq == seq:
                    break
                seq = next_seq

            def end(conn: Any) -> None:
                if run.full:
                    pulls.mark_unlisted_deleted(conn, device_id, run.generation)
                pulls.finish(conn, device_id, "contacts", seq or None)

            self._write(guid, end)

        self._run(guid, device_id, "contacts", full, body)

    def _rooms(
        self, guid: str, device_id: int, full: bool, report: SyncReport, progress: Progress | None
    ) -> None:
        def body(run: pulls.SyncRun) -> None:
            # Position: "list:<start_index>" while listing, then "detail:<last room id done>".
            phase, _, at = (run.cursor or "list:0").partition(":")
            if phase == "list":
                start = int(at or 0)
                while True:
                    data = self._call(guid, "/room/get_room_list", {"start_index": start, "limit": ROOM_PAGE})
                    rooms, next_start, total = protocol.room_list_page(data)
                    following = protocol.next_room_start(start, len(rooms), next_start, total)
                    position = "detail:" if following is None else f"list:{following}"

                    def page(conn: Any, rooms: list[RoomRow] = rooms, position: str = position) -> None:
                        pulls.store_rooms(conn, device_id, rooms)
                        pulls.progress(conn, device_id, "rooms", position, 0)

                    self._write(guid, page)
                    if following is None:
                        break
                    start = following
                at = ""
            # Every room the device knows, listed or only seen in messages (§12).
            versions = self.store.read(lambda conn: pulls.room_versions(conn, device_id))
            todo = [r for r in versions if r > at]
            total = len(versions)
            done = total - len(todo)
            for i in range(0, len(todo), ROOM_DETAIL_CHUNK):
                chunk = todo[i : i + ROOM_DETAIL_CHUNK]
                details = protocol.room_details(
                    self._call(guid, "/room/batch_get_room_detail", {"room_list": chunk})
                )
                done += len(chunk)

                def detail(
                    conn: Any,
                    details: list[RoomDetail] = details,
                    last: str = chunk[-1],
                    n: int = done,
                ) -> None:
                    pulls.store_room_details(conn, device_id, details)
                    pulls.progress(conn, device_id, "rooms", f"detail:{last}", n, total)

                self._write(guid, detail)
                report.rooms += len(details)
                report.members += sum(len(d.members or ()) for d in details)
                if progress:
                    progress("rooms", done, total)
            self._write(guid, lambda conn: pulls.finish(conn, device_id, "rooms"))

        self._run(guid, device_id, "rooms", full, body)

    def _messages(
        self, guid: str, device_id: int, full: bool, report: SyncReport, progress: Progress | None
    ) -> None:
        def body(run: pulls.SyncRun) -> None:
            # §12: the first sync_key's origin is unknown; start from the newest seq callbacks gave.
            key = run.cursor or self.store.read(lambda conn: pulls.newest_seq(conn, device_id))
            done = run.done
            while key:
                data = self._call(guid, "/sync/sync_msg", {"sync_key": key, "limit": MESSAGE_PAGE})
                items = [i for i in data.get("msg_list") or [] if isinstance(i, dict)]
                next_key = str(data.get("max_sync_key") or key)
                done += len(items)

                def page(conn: Any, items: list[Any] = items, cursor: str = next_key, n: int = done) -> int:
                    applied = self.store.apply_pulled_messages(conn, guid, items, now_seconds())
                    pulls.progress(conn, device_id, "messages", cursor, n)
                    return applied.messages_added

                added = self._write(guid, page)
                metrics.MESSAGES_STORED.labels("pull").inc(added)
                report.messages += added
                if progress:
                    progress("messages", done, None)
                more = int_or_none(data.get("continue_flag"))
                if not items or not more or next_key == key:
                    key = next_key
                    break
                key = next_key
            self._write(guid, lambda conn: pulls.finish(conn, device_id, "messages", key or None))

        self._run(guid, device_id, "messages", full, body)
