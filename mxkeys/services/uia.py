"""User-interactive authentication (spec: Client-Server API, "User-Interactive
Authentication API"), one service that every protected endpoint reuses.

A session is bound to the user it authenticates and to the request (method and path) it was
started for; it is stored in the database so any worker can continue it, and deleted once its
operation is authorised, so a completed session cannot authorise a second operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mxkeys.errors import MatrixError
from mxkeys.ids import make_user_id, now_ms, random_session_id, split_user_id
from mxkeys.services.auth import AuthService
from mxkeys.storage.uia import UiaSession, UiaStore

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"


class UiaRequired(MatrixError):
    """401 with the UIA body: flows, params, session, completed, and why a stage failed."""

    def __init__(
        self,
        session_id: str,
        flows: Sequence[Sequence[str]],
        completed: Sequence[str],
        errcode: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(401, errcode or "", error or "Authentication required")
        self.session_id = session_id
        self.flows = flows
        self.completed = list(completed)
        self.has_error = errcode is not None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "flows": [{"stages": list(flow)} for flow in self.flows],
            "params": {},
            "session": self.session_id,
            "completed": self.completed,
        }
        if self.has_error:
            body["errcode"] = self.errcode
            body["error"] = self.error
        return body


@dataclass(frozen=True, slots=True)
class UiaRequest:
    """What a session is bound to."""

    method: str
    path: str
    user_id: str | None  # the authenticated user, None for registration


class UiaService:
    def __init__(
        self, store: UiaStore, auth: AuthService, server_name: str, lifetime_ms: int
    ) -> None:
        self.store = store
        self.auth = auth
        self.server_name = server_name
        self.lifetime_ms = lifetime_ms

    async def authenticate(
        self,
        request: UiaRequest,
        auth: Any,
        flows: Sequence[Sequence[str]],
    ) -> None:
        """Return when `auth` completes one of `flows`; otherwise raise the 401 to send."""
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "'auth' must be an object")
        session = await self._session(request, auth)
        if not auth or "type" not in auth:
            raise UiaRequired(session.session_id, flows, session.completed)
        stage = auth["type"]
        if not isinstance(stage, str):
            raise MatrixError(400, "M_BAD_JSON", "'auth.type' must be a string")
        allowed = {s for flow in flows for s in flow}
        if stage not in allowed:
            raise UiaRequired(
                session.session_id,
                flows,
                session.completed,
                "M_UNRECOGNIZED",
                f"Authentication type {stage} is not offered here",
            )
        await self._check_stage(stage, auth, request, session, flows)
        completed = await self.store.mark_completed(session.session_id, stage)
        if any(all(s in completed for s in flow) for flow in flows):
            await self.store.delete_session(session.session_id)
            return
        raise UiaRequired(session.session_id, flows, completed)

    async def _session(self, request: UiaRequest, auth: dict[str, Any] | None) -> UiaSession:
        session_id = auth.get("session") if auth else None
        now = now_ms()
        if session_id is None:
            session_id = random_session_id()
            await self.store.create_session(
                session_id, request.user_id, request.method, request.path, now
            )
            return UiaSession(session_id, request.user_id, request.method, request.path, [], now)
        if not isinstance(session_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'auth.session' must be a string")
        session = await self.store.get_session(session_id)
        if session is None or now - session.created_ts > self.lifetime_ms:
            # Synapse answers an unknown session the same way.
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired session ID")
        if session.user_id != request.user_id:
            raise MatrixError(403, "M_FORBIDDEN", "This session belongs to another user")
        if (session.method, session.path) != (request.method, request.path):
            raise MatrixError(
                403,
                "M_FORBIDDEN",
                "Requested operation has changed during the authentication session",
            )
        return session

    async def _check_stage(
        self,
        stage: str,
        auth: dict[str, Any],
        request: UiaRequest,
        session: UiaSession,
        flows: Sequence[Sequence[str]],
    ) -> None:
        if stage == DUMMY:
            return
        if stage == PASSWORD:
            user_id = self.user_id_from_identifier(auth)
            password = auth.get("password")
            if not isinstance(password, str):
                raise MatrixError(400, "M_MISSING_PARAM", "'auth.password' is required")
            if user_id != request.user_id or not await self.auth.check_password(user_id, password):
                raise UiaRequired(
                    session.session_id,
                    flows,
                    session.completed,
                    "M_FORBIDDEN",
                    "Invalid username or password",
                )
            return
        raise UiaRequired(  # offered in a flow but not implemented: a server bug
            session.session_id, flows, session.completed, "M_UNRECOGNIZED", "Unsupported stage"
        )

    def user_id_from_identifier(self, body: dict[str, Any]) -> str:
        """The user named by `identifier` (type m.id.user) or the legacy `user` field."""
        identifier = body.get("identifier")
        if identifier is not None:
            if not isinstance(identifier, dict):
                raise MatrixError(400, "M_BAD_JSON", "'identifier' must be an object")
            if identifier.get("type") != "m.id.user":
                raise MatrixError(
                    400, "M_UNKNOWN", "Only identifiers of type m.id.user are supported"
                )
            user = identifier.get("user")
        else:
            user = body.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_MISSING_PARAM", "A user identifier is required")
        return self.qualify_user(user)

    def qualify_user(self, user: str) -> str:
        """`@name:server` from a localpart or a full user ID (user IDs are lower-cased)."""
        if user.startswith("@"):
            parts = split_user_id(user)
            if parts is None:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
            return make_user_id(parts[0].lower(), parts[1])
        return make_user_id(user.lower(), self.server_name)
