"""The staff-area convention, checked on the real route table.

Every privileged page lives under a Mount whose path contains "/staff" (instructors) or
"/moderate" (mentors and instructors) and whose middleware is CourseStaffGuard, and every
guarded Mount says so in its path, so a grep for those two words finds all of them.
Endpoints that rely on the guard (they read request.state.course) must not be reachable any
other way.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, Router

from core import endpoints, views
from core.app import create_app
from core.guards import CourseStaffGuard
from tests.conftest import make_settings


@dataclass(frozen=True)
class Found:
    path: str  # the full path, every enclosing Mount's prefix included
    route: BaseRoute
    mounts: tuple[Mount, ...]  # enclosing Mounts, outermost first
    mount_paths: tuple[str, ...]  # their full paths


def middleware_classes(mount: Mount) -> list[type]:
    """The middleware classes a Mount wraps its routes in, outermost first."""
    declared = getattr(mount, "middleware", None)
    if declared is not None:  # Starlette versions that keep the list
        return [entry.cls for entry in declared]
    # Starlette 1.x wraps `mount.app` in each middleware in turn and keeps no list:
    # follow the `.app` chain down to the Router holding the mounted routes.
    classes: list[type] = []
    layer = mount.app
    base = getattr(mount, "_base_app", None)
    while layer is not base and not isinstance(layer, Router) and hasattr(layer, "app"):
        classes.append(type(layer))
        layer = layer.app
    return classes


def is_guarded(mount: Mount) -> bool:
    return CourseStaffGuard in middleware_classes(mount)


def walk(
    routes: list[BaseRoute],
    prefix: str = "",
    mounts: tuple[Mount, ...] = (),
    mount_paths: tuple[str, ...] = (),
) -> Iterator[Found]:
    for route in routes:
        if isinstance(route, Mount):
            path = prefix + route.path
            yield Found(path, route, mounts, mount_paths)
            yield from walk(route.routes, path, (*mounts, route), (*mount_paths, path))
        elif isinstance(route, Route):
            yield Found(prefix + route.path, route, mounts, mount_paths)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """The real application, built but not started: routes need no database."""
    data_dir = tmp_path_factory.mktemp("routes")
    settings = make_settings(f"sqlite://{data_dir / 'unused.sqlite3'}", data_dir)
    return create_app(settings)


@pytest.fixture(scope="module")
def found(app: Starlette) -> list[Found]:
    return list(walk(app.routes))


def guarded_mount_paths(found: list[Found]) -> list[str]:
    return [f.path for f in found if isinstance(f.route, Mount) and is_guarded(f.route)]


def test_the_walk_sees_the_mounted_staff_routes(found: list[Found]) -> None:
    paths = {f.path for f in found if isinstance(f.route, Route)}
    assert "/courses/{slug}/staff/members" in paths
    assert "/api/v1/courses/{slug}/staff/members" in paths
    assert "/login" in paths
    assert len(guarded_mount_paths(found)) >= 2


def test_middleware_of_a_mount_is_found() -> None:
    class Other:
        def __init__(self, app: object) -> None:
            self.app = app

    from starlette.middleware import Middleware

    from core.models import Role

    mount = Mount(
        "/x",
        routes=[],
        middleware=[Middleware(Other), Middleware(CourseStaffGuard, roles=frozenset(Role))],
    )
    assert middleware_classes(mount) == [Other, CourseStaffGuard]
    assert middleware_classes(Mount("/y", routes=[])) == []


PRIVILEGED = ("/staff", "/moderate")


def is_privileged(path: str) -> bool:
    return any(word in path for word in PRIVILEGED)


def test_every_staff_route_is_behind_the_guard(found: list[Found]) -> None:
    unguarded = [
        f.path
        for f in found
        if isinstance(f.route, Route)
        and is_privileged(f.path)
        and not any(is_guarded(mount) for mount in f.mounts)
    ]
    assert unguarded == [], f"staff routes without CourseStaffGuard: {unguarded}"


def test_every_guarded_mount_says_staff_in_its_path(found: list[Found]) -> None:
    guarded = guarded_mount_paths(found)
    assert guarded
    for path in guarded:
        assert is_privileged(path), f"a CourseStaffGuard Mount without /staff or /moderate: {path}"
        # The guard looks the course up by this path parameter.
        assert "{slug}" in path, f"a CourseStaffGuard Mount without {{slug}}: {path}"


def test_no_route_under_staff_escapes_a_guarded_mount_by_its_own_path(
    found: list[Found],
) -> None:
    """'/staff' must come from the guarded Mount's path, not from a route below it."""
    for f in found:
        if isinstance(f.route, Route) and is_privileged(f.path):
            guarded_paths = [
                path
                for mount, path in zip(f.mounts, f.mount_paths, strict=True)
                if is_guarded(mount)
            ]
            assert any(is_privileged(path) for path in guarded_paths), f.path


GUARD_STATE = ("request.state.course", "request.state.role")


def reads_what_the_guard_sets(function: object) -> bool:
    try:
        source = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return any(name in source for name in GUARD_STATE)


def guard_dependent_core_endpoints() -> dict[str, object]:
    """Functions of core.views and core.endpoints that read what the guard puts in state."""
    import forum.views
    import moderation.public
    import moderation.views

    found: dict[str, object] = {}
    for module in (views, endpoints, forum.views, moderation.views, moderation.public):
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            if function.__module__ == module.__name__ and reads_what_the_guard_sets(function):
                found[f"{module.__name__}.{name}"] = function
    return found


def test_guard_dependent_core_endpoints_are_found() -> None:
    names = set(guard_dependent_core_endpoints())
    assert "core.views.members" in names
    assert {"core.endpoints.list_members", "core.endpoints.add_member"} <= names
    assert "core.views.course_home" not in names  # it checks membership itself
    assert Path(inspect.getfile(views)).name == "views.py"


def test_core_endpoints_reading_the_guards_course_are_only_routed_behind_the_guard(
    found: list[Found],
) -> None:
    by_identity = {
        id(function): name for name, function in guard_dependent_core_endpoints().items()
    }
    routed: set[str] = set()
    for f in found:
        if not isinstance(f.route, Route):
            continue
        name = by_identity.get(id(f.route.endpoint))
        if name is None:
            continue
        routed.add(name)
        assert any(is_guarded(mount) for mount in f.mounts), (
            f"{name} reads request.state.course but {f.path} is not behind CourseStaffGuard"
        )
    # The known ones are routed (otherwise this test would check nothing).
    assert {"core.views.members", "core.endpoints.list_members", "core.endpoints.add_member"} <= (
        routed
    )


def test_no_routed_endpoint_of_any_package_reads_guard_state_unguarded(
    found: list[Found],
) -> None:
    """The same rule for every package's endpoints in the route table."""
    unguarded = [
        f"{f.route.endpoint.__module__}.{f.route.endpoint.__name__} at {f.path}"
        for f in found
        if isinstance(f.route, Route)
        and reads_what_the_guard_sets(f.route.endpoint)
        and not any(is_guarded(mount) for mount in f.mounts)
    ]
    assert unguarded == []
