"""Push rules (spec: `pushrules.yaml`). Only the `global` scope exists."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import (
    homeserver,
    json_body,
    json_response,
    path_param,
    query_param,
    requester,
)
from mxkeys.services.pushrules import ActionsBody, EnabledBody, RuleBody


async def get_all(request: Request) -> Response:
    who = await requester(request)
    return json_response(await homeserver(request).push_rules.rules_for(who.user_id))


async def get_global(request: Request) -> Response:
    who = await requester(request)
    return json_response(await homeserver(request).push_rules.global_rules(who.user_id))


async def get_kind(request: Request) -> Response:
    # Not in the spec, but Synapse serves it and some clients use it.
    who = await requester(request)
    rules = await homeserver(request).push_rules.get_kind(who.user_id, path_param(request, "kind"))
    return json_response(rules)


async def get_rule(request: Request) -> Response:
    who = await requester(request)
    rule = await homeserver(request).push_rules.get_rule(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id")
    )
    return json_response(rule)


async def put_rule(request: Request) -> Response:
    who = await requester(request)
    kind = path_param(request, "kind")
    rule_id = path_param(request, "rule_id")
    before = query_param(request, "before")
    after = query_param(request, "after")
    body = await json_body(request, RuleBody)
    await homeserver(request).push_rules.put_rule(who.user_id, kind, rule_id, body, before, after)
    return json_response({})


async def delete_rule(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).push_rules.delete_rule(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id")
    )
    return json_response({})


async def get_enabled(request: Request) -> Response:
    who = await requester(request)
    rule = await homeserver(request).push_rules.get_rule(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id")
    )
    return json_response({"enabled": rule["enabled"]})


async def put_enabled(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, EnabledBody)
    await homeserver(request).push_rules.set_enabled(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id"), body.enabled
    )
    return json_response({})


async def get_actions(request: Request) -> Response:
    who = await requester(request)
    rule = await homeserver(request).push_rules.get_rule(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id")
    )
    return json_response({"actions": rule["actions"]})


async def put_actions(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, ActionsBody)
    await homeserver(request).push_rules.set_actions(
        who.user_id, path_param(request, "kind"), path_param(request, "rule_id"), body.actions
    )
    return json_response({})


RULE = "/pushrules/global/{kind}/{rule_id}"

routes = [
    Route("/pushrules/", get_all, methods=["GET"]),
    Route("/pushrules/global/", get_global, methods=["GET"]),
    Route("/pushrules/global/{kind}/", get_kind, methods=["GET"]),
    Route(RULE, get_rule, methods=["GET"]),
    Route(RULE, put_rule, methods=["PUT"]),
    Route(RULE, delete_rule, methods=["DELETE"]),
    Route(RULE + "/enabled", get_enabled, methods=["GET"]),
    Route(RULE + "/enabled", put_enabled, methods=["PUT"]),
    Route(RULE + "/actions", get_actions, methods=["GET"]),
    Route(RULE + "/actions", put_actions, methods=["PUT"]),
]
