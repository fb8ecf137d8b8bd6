"""The homeserver object: configuration, storage and services, wired once."""

from __future__ import annotations

import logging

from mxkeys.config import Config
from mxkeys.services.account_data import AccountDataService
from mxkeys.services.auth import AuthService
from mxkeys.services.cross_signing import CrossSigningService
from mxkeys.services.device_lists import DeviceListService
from mxkeys.services.devices import DeviceService
from mxkeys.services.filtering import FilterService
from mxkeys.services.keys import KeyService
from mxkeys.services.notifier import Notifier
from mxkeys.services.passwords import PasswordHasher
from mxkeys.services.profile import ProfileService
from mxkeys.services.pushrules import PushRulesService
from mxkeys.services.ratelimit import RateLimits
from mxkeys.services.registration import RegistrationService
from mxkeys.services.room_keys import RoomKeyService
from mxkeys.services.rooms import RoomService
from mxkeys.services.signing import load_signing_key
from mxkeys.services.sync import SyncService
from mxkeys.services.sync_sources import AccountDataSource
from mxkeys.services.to_device import ToDeviceService
from mxkeys.services.uia import UiaService
from mxkeys.storage import Storage
from mxkeys.storage.database import Database
from mxkeys.storage.device_keys import DEVICE_LISTS_CHANGED, DEVICES_REMOVED
from mxkeys.storage.migrate import upgrade

logger = logging.getLogger(__name__)


class HomeServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.database_url, config.database_pool_size)
        self.storage = Storage(self.db)
        self.notifier = Notifier()
        self.passwords = PasswordHasher(
            config.password_time_cost,
            config.password_memory_cost_kib,
            config.password_parallelism,
        )
        self.auth = AuthService(self.storage.accounts, self.passwords)
        self.uia = UiaService(
            self.storage.uia, self.auth, config.server_name, config.uia_session_lifetime_ms
        )
        self.registration = RegistrationService(
            self.storage.accounts, self.passwords, config.server_name
        )
        self.devices = DeviceService(self.storage.accounts)
        # Shared by all workers through PostgreSQL; SQLite has one process, buckets in memory.
        self.rate_limits = RateLimits.from_config(
            config, self.storage.rate_limits if self.db.dialect == "postgresql" else None
        )
        self.keys = KeyService(
            self.storage.device_keys,
            config.server_name,
            config.max_unclaimed_one_time_keys,
            self.rate_limits.keys_claim,
            config.max_keys_per_upload,
        )
        self.cross_signing = CrossSigningService(self.storage.device_keys, self.uia)
        self.auth.is_reserved_device_id = self.cross_signing.is_key_id
        self.room_keys = RoomKeyService(self.storage.room_keys, self.rate_limits.room_keys_upload)
        self.rooms = RoomService(
            self.storage.rooms, self.storage.accounts, self.notifier, config.server_name
        )
        self.sync = SyncService(self.rooms, self.notifier)
        self.to_device = ToDeviceService(
            self.storage.to_device,
            self.notifier,
            config.server_name,
            self.rate_limits.send_to_device,
            config.max_to_device_messages_per_request,
            config.max_queued_to_device_messages,
        )
        self.sync.add_source(self.to_device)
        self.account_data = AccountDataService(
            self.storage.account_data, self.notifier, config.max_account_data_bytes
        )
        self.filters = FilterService(self.storage.filters)
        self.profile = ProfileService(self.storage.profiles, config.server_name)
        self.registration.on_registered.append(self.profile.on_registered)
        self.push_rules = PushRulesService(self.storage.push_rules, self.notifier)
        self.account_data.push_rules_source = self.push_rules.rules_for
        self.sync.add_source(AccountDataSource(self.account_data))
        # Membership events carry the member's profile, and follow its changes.
        self.rooms.profile_of = self.profile.get_profile
        self.profile.add_listener(self.rooms.on_profile_change)
        self.device_lists = DeviceListService(
            self.storage.device_lists, self.storage.device_keys, self.notifier
        )
        self.sync.add_source(self.device_lists)
        self.db.on_commit(DEVICE_LISTS_CHANGED, self.device_lists.committed)
        self.db.on_commit(DEVICES_REMOVED, self.to_device.devices_removed)

    def migrate(self) -> None:
        upgrade(self.db.engine)

    def start(self) -> None:
        """Migrate, then load what needs the database (the server's signing key)."""
        self.migrate()
        self.rooms.signing_key = load_signing_key(self.storage.server_keys)

    def close(self) -> None:
        self.db.close()
