"""A Django site for the middleware tests: settings, URLs and views in one module (its own ROOT_URLCONF).

Real authentication: sessions and ``django.contrib.auth`` on an in-memory SQLite database, so a test
client's ``force_login`` makes ``request.user`` an authenticated user loaded by Django.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

from .web_apps import DJANGO_ASK, DJANGO_ASTREAM, DJANGO_CHAT, DJANGO_STREAM, achat, chat


def user_chat(request: HttpRequest, user_id: int) -> JsonResponse:
    return JsonResponse({"answer": chat()})


async def team_ask(request: HttpRequest, team: str) -> JsonResponse:
    return JsonResponse({"answer": await achat()})


def team_stream(request: HttpRequest, team: str) -> StreamingHttpResponse:
    """The provider is called while the body streams, after every middleware returned."""

    def body() -> Any:
        yield "answer: "
        yield chat()

    return StreamingHttpResponse(body())


async def team_astream(request: HttpRequest, team: str) -> StreamingHttpResponse:
    async def body() -> Any:
        yield "answer: "
        yield await achat()

    return StreamingHttpResponse(body())


urlpatterns = [
    path(DJANGO_CHAT, user_chat),
    path(DJANGO_ASK, team_ask),
    path(DJANGO_STREAM, team_stream),
    path(DJANGO_ASTREAM, team_astream),
]


def setup() -> Any:
    """Configures Django for this process once (settings cannot change after) and creates the auth tables;
    returns the ``User`` model."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
            MIDDLEWARE=[
                "spanmeter_instrumentation.SpanmeterDjangoMiddleware",  # before auth: it reads the user lazily
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            USE_TZ=True,
            SPANMETER_USER_HEADER="X-User-Id",
        )
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth import get_user_model

    return get_user_model()
