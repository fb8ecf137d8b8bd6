"""All SQL lives here: one dialect-neutral layer over SQLite and PostgreSQL."""

from __future__ import annotations

from mxkeys.storage.account_data import AccountDataStore
from mxkeys.storage.accounts import AccountStore
from mxkeys.storage.database import Database
from mxkeys.storage.device_keys import DeviceKeysStore
from mxkeys.storage.device_lists import DeviceListStore
from mxkeys.storage.filters import FilterStore
from mxkeys.storage.profile import ProfileStore
from mxkeys.storage.pushrules import PushRulesStore
from mxkeys.storage.rate_limits import RateLimitStore
from mxkeys.storage.room_keys import RoomKeyStore
from mxkeys.storage.rooms import RoomStore
from mxkeys.storage.server_keys import ServerKeyStore
from mxkeys.storage.to_device import ToDeviceStore
from mxkeys.storage.uia import UiaStore


class Storage:
    """Every store, sharing one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.accounts = AccountStore(db)
        self.uia = UiaStore(db)
        self.account_data = AccountDataStore(db)
        self.filters = FilterStore(db)
        self.profiles = ProfileStore(db)
        self.push_rules = PushRulesStore(db, self.account_data)
        self.device_keys = DeviceKeysStore(db)
        self.room_keys = RoomKeyStore(db)
        self.rooms = RoomStore(db)
        self.server_keys = ServerKeyStore(db)
        self.to_device = ToDeviceStore(db)
        self.device_lists = DeviceListStore(db)
        self.rate_limits = RateLimitStore(db)
