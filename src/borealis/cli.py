"""The ``borealis`` command. Scripts drive these exact forms; keep stdout to the one value asked for."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.orm import Session

from borealis import migrate
from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.auth import sessions
from borealis.auth.models import User
from borealis.config import ConfigError, Settings, load_settings
from borealis.db import Database
from borealis.errors import BorealisError
from borealis.files import private_dir
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role

if TYPE_CHECKING:
    from borealis.jobs.worker import Worker

app = typer.Typer(
    help="Borealis: Dynatrace problems into incidents with a root-cause analysis.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (sent as 'Authorization: Bearer <key>').", no_args_is_help=True)
workspaces_app = typer.Typer(help="Workspaces and their members.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="api-keys")
app.add_typer(workspaces_app, name="workspaces")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _prepare_storage(settings: Settings) -> None:
    private_dir(settings.data_dir)


def _database(settings: Settings) -> Database:
    """The configured database; SQLite, which has no deploy step of its own, is brought up to date."""
    _prepare_storage(settings)
    database = Database(settings.effective_database_url)
    if database.is_sqlite:
        migrate.upgrade(database.url)
    return database


Imports = Annotated[
    list[str] | None,
    typer.Option("--import", help="Also import this module for its job handlers (repeatable)."),
]


@contextmanager
def _session() -> Iterator[Session]:
    """A write session on the configured database, committed when the command succeeds."""
    settings = _settings()
    database = _database(settings)
    session = database.session(write=True)
    try:
        yield session
        session.commit()
    except BorealisError as exc:
        session.rollback()
        raise _fail(exc.message) from None
    finally:
        session.close()
        database.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run the background workers in this process.")
    ] = True,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Jobs the in-process workers run at once.")
    ] = 4,
    imports: Imports = None,
) -> None:
    """Run the API, the web UI and the background workers (the webhook writer in a process beside)."""
    import uvicorn

    from borealis.app import create_app
    from borealis.logs import configure_logging
    from borealis.server import uvicorn_config

    settings = _settings()
    configure_logging(settings.log_level)
    database = _database(settings)
    application = create_app(settings, database)
    worker = (
        _make_worker(settings, database, concurrency=concurrency, imports=imports or []) if workers else None
    )
    # uvicorn handles SIGTERM/SIGINT itself, then re-raises them once it has shut down: ours then let
    # the workers finish or give back their jobs instead of dying mid-job.
    _on_stop_signals(worker.request_stop if worker else lambda: None)
    typer.echo(
        f"Borealis listening on http://{host}:{port} (database: {database.engine.url.render_as_string()})",
        err=True,
    )
    if worker is not None:
        worker.start()
    try:
        uvicorn.Server(
            uvicorn_config(application, settings, host=host, port=port, log_level=settings.log_level.lower())
        ).run()
    finally:
        if worker is not None:
            worker.stop()


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[
        Path, typer.Option(help="The demo's own data folder, emptied on every run (never ./data).")
    ] = Path("data-demo"),
) -> None:
    """Try Borealis without a Dynatrace tenant: a simulated environment sends problems through the real
    webhook, and incidents with their RCA reports appear within a minute. Starts clean every run."""
    import threading

    import uvicorn

    from borealis.app import create_app
    from borealis.logs import configure_logging
    from borealis.server import uvicorn_config
    from borealis.simulation import demo as simulated
    from borealis.simulation import running_fake_dynatrace

    try:
        simulated.prepare_data_dir(data_dir)
    except simulated.DemoError as exc:
        raise _fail(str(exc)) from None
    simulated.apply_environment(data_dir)
    settings = _settings()
    configure_logging(settings.log_level)
    database = _database(settings)
    account = simulated.create_account(database)
    worker = _make_worker(settings, database)
    _on_stop_signals(worker.request_stop)
    server = uvicorn.Server(
        uvicorn_config(create_app(settings, database), settings, host=host, port=port, log_level="warning")
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (what a browser opens)
    base_url = f"http://{shown}:{port}"
    with running_fake_dynatrace() as fake:
        setup = threading.Thread(
            target=_demo_setup, args=(server, base_url, account, fake, data_dir), daemon=True
        )
        setup.start()
        worker.start()
        try:
            server.run()
        finally:
            worker.stop()
            database.dispose()


def _demo_setup(server: Any, base_url: str, account: Any, fake: Any, data_dir: Path) -> None:
    """Once the server answers: the account, the connection, the problems, then each RCA as it lands."""
    import httpx

    from borealis.simulation import demo as simulated

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    began = time.monotonic()
    say = typer.echo
    say(f"Borealis demo: data in {data_dir} (emptied on every run), simulated Dynatrace at {fake.url}")
    say(f"log in at {base_url}/login as {account.email} with password {account.password}")
    say(f"API key (Authorization: Bearer ...): {account.api_key}")
    try:
        chosen = simulated.populate(base_url, account, fake, say)
        problems = sum(len(scenario.problems) for scenario in chosen)
        notifications = sum(scenario.notifications for scenario in chosen)
        say(
            f"sent {problems} problems in {notifications} notifications in {time.monotonic() - began:.0f} s;"
            f" open {base_url}/incidents"
        )
        simulated.watch(base_url, account, say, expected=len(chosen))
    except (simulated.DemoError, httpx.HTTPError) as exc:
        typer.secho(f"error: the demo could not set itself up: {exc}", fg=typer.colors.RED, err=True)
        server.should_exit = True
        return
    say("Borealis keeps serving; Ctrl-C stops it")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once (threads).")] = 4,
    lease: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds a claimed job stays ours without a renewal; a dead worker's "
            "jobs are taken over after this.",
        ),
    ] = 60.0,
    grace: Annotated[
        float,
        typer.Option(min=0, help="Seconds to let running jobs finish on SIGTERM before giving them back."),
    ] = 25.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for --metrics-port.")] = "127.0.0.1",
    imports: Imports = None,
) -> None:
    """Run background workers only (scale-out: any number of these against one PostgreSQL)."""
    from borealis.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    database = _database(settings)
    try:
        runner = _make_worker(
            settings,
            database,
            concurrency=concurrency,
            lease_seconds=lease,
            grace_seconds=grace,
            imports=imports or [],
        )
    except ImportError as exc:
        raise _fail(f"cannot import job handlers: {exc}") from None
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    _on_stop_signals(runner.request_stop)
    try:
        runner.run_until_stopped()
    finally:
        database.dispose()


def _make_worker(
    settings: Settings, database: Database, *, imports: list[str] | None = None, **options: Any
) -> Worker:
    """A worker with every job kind registered (``register_handlers``) plus the ``imports`` modules' own."""
    from borealis import assembly
    from borealis.app import make_secret_box
    from borealis.jobs.registry import register_handlers
    from borealis.jobs.worker import Worker

    assembly.install()
    register_handlers(extra_modules=imports or [])
    return Worker(database=database, settings=settings, secret_box=make_secret_box(settings), **options)


def _on_stop_signals(callback: Callable[[], None]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: callback())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = _settings()
    _prepare_storage(settings)
    migrate.upgrade(settings.effective_database_url)
    typer.echo("database is up to date", err=True)


@users_app.command("create")
def users_create(
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user, with a personal workspace of their own, and print its id."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _fail("no password on standard input")
    with _session() as session:
        user, _ = workspaces_service.create_user(
            db_session=session, email=email, password=password, is_admin=admin
        )
        user_id = user.id
    typer.echo(user_id)


@users_app.command("set-password")
def users_set_password(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password (a reset by an administrator) and end all their web sessions."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _fail("no password on standard input")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    with _session() as session:
        user = _user(session, email)
        ended = auth_service.set_password(db_session=session, user=user, password=password)
    typer.echo(f"password set for {email}; {ended} web session(s) ended", err=True)


@users_app.command("revoke-sessions")
def users_revoke_sessions(email: str) -> None:
    """End all of a user's web sessions: every browser must log in again (API keys keep working)."""
    with _session() as session:
        user = _user(session, email)
        ended = sessions.revoke_all(db_session=session, user_id=user.id)
    typer.echo(f"{ended} web session(s) of {email} ended", err=True)


def _user(session: Session, email: str) -> User:
    user = auth_service.get_by_email(db_session=session, email=email)
    if user is None:
        raise _fail(f"no user with email {email}; create one with `borealis users create {email}`")
    return user


# Changes made from the command line are the server operator's: the audit log names them so.
CLI_ACTOR = Actor(user_id=None, email="borealis command line", via="cli")
WorkspaceOption = Annotated[
    str | None,
    typer.Option("--workspace", help="The workspace id (default: the user's first, their personal one)."),
]


def _workspace_of(session: Session, user: User, workspace_id: str | None) -> str:
    """The workspace a key command acts in: the one named, where the user must be a member."""
    if workspace_id is None:
        found = workspaces_service.for_user(db_session=session, user_id=user.id)
        if not found:
            raise _fail(
                f"{user.email} belongs to no workspace; add them with `borealis workspaces add-member`"
            )
        return found[0][0].id
    if not workspaces_service.is_member(db_session=session, workspace_id=workspace_id, user_id=user.id):
        raise _fail(f"{user.email} is not a member of workspace {workspace_id}")
    return workspace_id


@keys_app.command("create")
def api_keys_create(
    email: str,
    name: Annotated[str, typer.Option(help="A label to tell keys apart.")] = "default",
    workspace: WorkspaceOption = None,
) -> None:
    """Create an API key for a user in a workspace and print it (shown once; only its hash is stored).
    It acts there with the user's role, whatever that is at the time of each request."""
    with _session() as session:
        user = _user(session, email)
        workspace_id = _workspace_of(session, user, workspace)
        _, plain = auth_service.create_api_key(
            db_session=session, user=user, workspace_id=workspace_id, actor=CLI_ACTOR, name=name
        )
    typer.echo(plain)


@keys_app.command("revoke")
def api_keys_revoke(
    email: str,
    key: Annotated[str, typer.Argument(help="The key's id or shown prefix.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Revoke one of a user's API keys."""
    with _session() as session:
        user = _user(session, email)
        workspace_id = _workspace_of(session, user, workspace)
        api_key = auth_service.revoke_api_key(
            db_session=session,
            workspace_id=workspace_id,
            key_id_or_prefix=key,
            actor=CLI_ACTOR,
            user_id=user.id,
        )
        typer.echo(f"revoked {api_key.prefix}… ({api_key.name})", err=True)


@keys_app.command("list")
def api_keys_list(email: str, workspace: WorkspaceOption = None) -> None:
    """List a user's API keys in a workspace (id, prefix, name, state)."""
    with _session() as session:
        user = _user(session, email)
        workspace_id = _workspace_of(session, user, workspace)
        for api_key in auth_service.list_api_keys(
            db_session=session, workspace_id=workspace_id, user_id=user.id
        ):
            state = "revoked" if api_key.revoked_at else "active"
            typer.echo(f"{api_key.id}\t{api_key.prefix}…\t{api_key.name}\t{state}")


RoleArgument = Annotated[Role, typer.Argument(help="owner, responder or viewer.")]


@workspaces_app.command("create")
def workspaces_create(
    name: str, owner: Annotated[str, typer.Option("--owner", help="The first owner's email.")]
) -> None:
    """Create a workspace with its first owner and print its id."""
    with _session() as session:
        user = _user(session, owner)
        workspace = workspaces_service.create(db_session=session, name=name, owner=user, actor=CLI_ACTOR)
        workspace_id = workspace.id
    typer.echo(workspace_id)


@workspaces_app.command("list")
def workspaces_list(
    user_email: Annotated[
        str | None, typer.Option("--user", help="Only this user's, with their role.")
    ] = None,
) -> None:
    """List workspaces (id, name, and the user's role with --user, else the member count)."""
    with _session() as session:
        if user_email is not None:
            user = _user(session, user_email)
            for workspace, role in workspaces_service.for_user(db_session=session, user_id=user.id):
                typer.echo(f"{workspace.id}\t{workspace.name}\t{role.value}")
            return
        for workspace, count in workspaces_service.all_with_counts(db_session=session):
            typer.echo(f"{workspace.id}\t{workspace.name}\t{count} member(s)")


@workspaces_app.command("add-member")
def workspaces_add_member(workspace_id: str, email: str, role: RoleArgument = Role.VIEWER) -> None:
    """Give a user a role in a workspace."""
    with _session() as session:
        _workspace(session, workspace_id)
        workspaces_service.add_member(
            db_session=session, workspace_id=workspace_id, username=email, role=role, actor=CLI_ACTOR
        )
    typer.echo(f"{email} is {role.value} of {workspace_id}", err=True)


@workspaces_app.command("set-role")
def workspaces_set_role(workspace_id: str, email: str, role: RoleArgument) -> None:
    """Change a member's role (a workspace keeps at least one owner)."""
    with _session() as session:
        _workspace(session, workspace_id)
        user = _user(session, email)
        workspaces_service.set_role(
            db_session=session, workspace_id=workspace_id, user_id=user.id, role=role, actor=CLI_ACTOR
        )
    typer.echo(f"{email} is {role.value} of {workspace_id}", err=True)


@workspaces_app.command("remove-member")
def workspaces_remove_member(workspace_id: str, email: str) -> None:
    """Take a user out of a workspace; their keys there stop working at once."""
    with _session() as session:
        _workspace(session, workspace_id)
        user = _user(session, email)
        workspaces_service.remove_member(
            db_session=session, workspace_id=workspace_id, user_id=user.id, actor=CLI_ACTOR
        )
    typer.echo(f"{email} is no longer a member of {workspace_id}", err=True)


def _workspace(session: Session, workspace_id: str) -> None:
    if workspaces_service.get(db_session=session, workspace_id=workspace_id) is None:
        raise _fail(f"no workspace {workspace_id}; `borealis workspaces list` shows them")


if __name__ == "__main__":
    app()
