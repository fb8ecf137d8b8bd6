"""The homeserver object: configuration, storage and services, wired once."""

from __future__ import annotations

import logging

from mxkeys.config import Config
from mxkeys.services.auth import AuthService
from mxkeys.services.devices import DeviceService
from mxkeys.services.passwords import PasswordHasher
from mxkeys.services.registration import RegistrationService
from mxkeys.services.uia import UiaService
from mxkeys.storage import Storage
from mxkeys.storage.database import Database
from mxkeys.storage.migrate import upgrade

logger = logging.getLogger(__name__)


class HomeServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = Database(config.database_url, config.database_pool_size)
        self.storage = Storage(self.db)
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

    def migrate(self) -> None:
        upgrade(self.db.engine)

    def close(self) -> None:
        self.db.close()
