"""The JSON API's plumbing: typed routes, body validation, errors and the OpenAPI document.

Each endpoint is an `ApiRoute` that names its request and response models; the OpenAPI
document is built by walking the application's routes, so it cannot drift from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from core.errors import InvalidInput, NotAuthenticated
from core.models import User

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]

MAX_JSON_BYTES = 1024 * 1024


class ApiRoute(Route):
    """A Route with what the OpenAPI document needs to describe it."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        method: str,
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        many: bool = False,
        status_code: int = 200,
        public: bool = False,
        tag: str = "core",
        bodyless: bool = False,
    ) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method.lower()
        self.summary = summary
        self.body = body
        self.response = response
        self.many = many
        self.status_code = status_code
        self.public = public
        self.tag = tag
        # A POST that takes no input says so, rather than declaring an empty body model.
        self.bodyless = bodyless


def api_user(request: Request) -> User:
    user: User | None = request.scope.get("user")
    if user is None:
        raise NotAuthenticated(
            "Send a valid API token as 'Authorization: Bearer <token>' "
            "(create one with 'agora tokens create USERNAME')."
        )
    return user


NUL_MESSAGE = "Text cannot contain NUL characters."


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or InvalidInput naming each bad field."""
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidInput("The request body is too large.")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise InvalidInput("The request body must be JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The request body must be a JSON object.")
    # PostgreSQL cannot store or even look up text with a NUL character in it.
    with_nul = {str(key): NUL_MESSAGE for key, value in data.items() if _has_nul([key, value])}
    if with_nul:
        raise InvalidInput(NUL_MESSAGE, fields=with_nul)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "body"
            fields.setdefault(name, error["msg"])
        raise InvalidInput("Some fields are missing or invalid.", fields=fields) from None


def json_response(model: BaseModel | list[BaseModel], status_code: int = 200) -> JSONResponse:
    if isinstance(model, list):
        content: Any = [item.model_dump(mode="json") for item in model]
    else:
        content = model.model_dump(mode="json")
    return JSONResponse(content, status_code=status_code)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, ApiRoute]]:
    for route in routes:
        if isinstance(route, ApiRoute):
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """OpenAPI 3.1 for every ApiRoute reachable from `routes`."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    for raw_path, route in _walk(routes):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", raw_path)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": f"{route.method}_{route.name}",
            "responses": {},
        }
        params = re.findall(r"\{(\w+)(?::(\w+))?\}", raw_path)
        if params:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer" if converter == "int" else "string"},
                }
                for name, converter in params
            ]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            schema = ref(route.response)
            if route.many:
                schema = {"type": "array", "items": schema}
            ok["content"] = {"application/json": {"schema": schema}}
        operation["responses"][str(route.status_code)] = ok
        error = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        for status, text in (
            ("401", "No or bad token"),
            ("403", "Not allowed"),
            ("404", "Not found"),
            ("422", "Invalid input"),
        ):
            if status == "401" and route.public:
                continue
            operation["responses"][status] = {"description": text, **error}
        if not route.public:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agora API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
