"""Cases 12 (auth) and 13 (names) of issue 9, against a real ``flamed run``.

12: the default config listens on loopback only; with ``token_file`` every route
but /healthz, /readyz and the web page's own paths (which hold no data, see
``OPEN_PATHS``/``PAGE_PATHS``) answers 401 to a missing or wrong token, and the
token is compared with ``hmac.compare_digest``.

13: hostile names (``../``, ``%2e%2e%2f``, absolute paths, NUL) in target names
are refused at config load, in query parameters and URL paths get 400/404, and
nothing outside the state directory is read or written, watched with inotify
(watchdog's open/close events) on a sibling folder while the daemon works.
"""

from __future__ import annotations

import http.client
import inspect
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from flamed.collapse.errors import ConfigError
from flamed.daemon import middlewares
from flamed.daemon.app import OPEN_PATHS, create_app
from flamed.daemon.config import default_text, load_config, parse_config
from flamed.daemon.webpage import PAGE_PATHS
from tests.reliability import Daemon, start_daemon, wait_until

TOKEN = "correct-horse-battery-staple"
OPEN = OPEN_PATHS | PAGE_PATHS
ROUTES = [
    "/",
    "/static/page.js",
    "/static/page.css",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/targets",
    "/api/v1/folded?target=ghost",
    "/api/v1/flamegraph?target=ghost",
    "/api/v1/diff?target=ghost",
    "/api/v1/pprof?target=ghost",
    "/api/v1/profile?target=ghost",
    "/api/v1/timeline?target=ghost",
    "/api/v1/speedscope?target=ghost",
    "/folded.txt",
    "/flamegraph.svg",
    "/no/such/route",
]
WRONG = [
    None,
    "",
    "Bearer",
    "Bearer ",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"bearer {TOKEN}",
    f"Basic {TOKEN}",
    TOKEN,
    f"Bearer  {TOKEN}",
    f"Bearer {TOKEN.upper()}",
    "Bearer \u00e9\u00e9",
]


def request(daemon: Daemon, path: str, authorization: str | None) -> int:
    """Raw http.client, so any header value (even non-ASCII) goes out as given."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        if authorization is not None:
            conn.putheader("Authorization", authorization.encode("utf-8"))
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(
        tmp_path_factory.mktemp("auth") / "run",
        token=TOKEN,
        server='allowed_hosts = ["flamed.example.com"]\n',
    )
    yield running
    running.stop()


# -- case 12: auth ---------------------------------------------------------------------------


def test_default_config_listens_on_loopback_only() -> None:
    assert parse_config(default_text()).server.host == "127.0.0.1"
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "flamed.toml"
    assert load_config(str(shipped)).server.host == "127.0.0.1"  # what install.sh installs
    bare = parse_config('[storage]\nstate_dir = "/tmp/x"\n[[targets]]\nname = "a"\nall = true\n')
    assert bare.server.host == "127.0.0.1" and bare.server.token is None


def listening_addresses(pid: int) -> set[str]:
    """Local addresses of the process's listening TCP sockets, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}") if fd.isdigit() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.add(fields[1])
    return found


def test_the_daemon_binds_only_what_the_config_says(daemon: Daemon) -> None:
    addresses = listening_addresses(daemon.pid)
    assert addresses == {f"0100007F:{daemon.port:04X}"}, addresses


def test_every_route_but_the_open_ones_needs_the_token(daemon: Daemon) -> None:
    refused = 0
    for path in ROUTES:
        bare = path.split("?")[0]
        for authorization in WRONG:
            status = request(daemon, path, authorization)
            if bare in OPEN:
                assert status != 401, (path, authorization)
            else:
                assert status == 401, (path, authorization, status)
                refused += 1
        right = request(daemon, path, f"Bearer {TOKEN}")
        assert right != 401, path
    # the token in the query string is no token
    assert request(daemon, f"/api/v1/targets?token={TOKEN}", None) == 401
    assert refused == (len(ROUTES) - len(OPEN)) * len(WRONG)
    print(f"\nFIGURE case12 401s={refused} over {len(ROUTES)} routes x {len(WRONG)} bad tokens")


# -- case 12: the Host header (DNS rebinding) ---------------------------------------------

ACCEPTED_HOSTS = [
    "localhost",
    "LOCALHOST:9797",
    "localhost.",
    "127.0.0.1",
    "127.0.0.1:1",
    "[::1]",
    "[::1]:9797",
    "10.1.2.3:9797",  # an address: no DNS name, so nothing to rebind (pod IPs, probes)
    "flamed.example.com",  # listed in allowed_hosts
    "Flamed.Example.COM:443",
]
REFUSED_HOSTS = [
    None,  # no Host header at all
    "",
    "evil.example",
    "evil.example:9797",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "sub.flamed.example.com",
    "flamed.example.com.evil",
    "localhost:notaport",
    "[::1",
    "::1",
    "local host",
]


def host_request(daemon: Daemon, path: str, host: str | None) -> tuple[int, bytes]:
    """GET with exactly this Host header (or none), and the right token."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("host", ACCEPTED_HOSTS)
def test_loopback_addresses_and_allowed_hosts_are_served(daemon: Daemon, host: str) -> None:
    for path in ("/api/v1/targets", "/healthz", "/"):
        assert host_request(daemon, path, host)[0] == 200, (host, path)


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_other_host_headers_are_refused_in_one_line(daemon: Daemon, host: str | None) -> None:
    """A page on any site can make a browser resolve its own name to 127.0.0.1 (DNS
    rebinding); its requests then carry that name in Host and are refused."""
    for path in ("/api/v1/targets", "/api/v1/folded?target=ghost", "/healthz", "/"):
        status, body = host_request(daemon, path, host)
        assert status in (400, 421), (host, path, status)  # 400: aiohttp's own, no Host at all
        if status == 421:
            assert body.count(b"\n") == 1 and b"allowed_hosts" in body, body


def test_open_paths_are_only_health_and_the_data_free_page() -> None:
    assert {"/healthz", "/readyz"} == OPEN_PATHS
    assert {"/", "/static/page.js", "/static/page.css"} == PAGE_PATHS


def test_the_token_is_compared_in_constant_time() -> None:
    source = inspect.getsource(middlewares.auth_middleware)
    assert "hmac.compare_digest(" in source
    assert "== expected" not in source and "!= expected" not in source


async def test_compare_digest_is_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aiohttp_client: object
) -> None:
    """Swap compare_digest for 'always equal': a wrong token then passes, so it is the check."""
    from prometheus_client import CollectorRegistry

    from tests.daemon.conftest import FakeFactory, make_config

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = make_config(tmp_path, server=f"token_file = {str(token_file)!r}")
    app = create_app(
        config, session_factory=FakeFactory(), registry=CollectorRegistry(), watch=False
    )
    client = await aiohttp_client(app)  # type: ignore[operator]
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.get("/api/v1/targets", headers=wrong)).status == 401
    monkeypatch.setattr(middlewares.hmac, "compare_digest", lambda a, b: True)
    assert (await client.get("/api/v1/targets", headers=wrong)).status == 200


# -- case 13: names --------------------------------------------------------------------------

BAD_NAMES = [
    "../x",
    "..",
    ".",
    "%2e%2e%2f",
    "/etc/passwd",
    "a/b",
    "a\\u0000b",
    "a\\u0000",
    "",
    "x" * 65,
    ".hidden",
    "a\\nb",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_hostile_target_names_are_refused_at_config_load(name: str) -> None:
    text = f'[storage]\nstate_dir = "/tmp/s"\n[[targets]]\nname = "{name}"\nall = true\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["state_dir", "inbox"])
def test_paths_with_nul_are_refused_at_config_load(key: str) -> None:
    other = "" if key == "state_dir" else 'state_dir = "/tmp/s"\n'
    text = f'[storage]\n{other}{key} = "/tmp/a\\u0000b"\n[[targets]]\nname = "a"\nall = true\n'
    with pytest.raises(ConfigError, match=key):
        parse_config(text, "t.toml")


def test_token_file_with_nul_is_refused_at_config_load() -> None:
    text = (
        '[server]\ntoken_file = "/tmp/a\\u0000b"\n[storage]\nstate_dir = "/tmp/s"\n'
        '[[targets]]\nname = "a"\nall = true\n'
    )
    with pytest.raises(ConfigError, match="token_file"):
        parse_config(text, "t.toml")


FOLDED = "/api/v1/folded?target=ghost&window=1h"
TRAVERSALS = [
    "../ghost",
    "..%2Fghost",
    "%2e%2e%2fghost",
    "%252e%252e%252f",
    "/etc/passwd",
    "ghost%00",
    "ghost%2F..%2F..%2Fetc%2Fpasswd",
    "..",
    "%00",
    "state/../ghost",
]
PATHS = [
    "/static/../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2F..%2Fetc%2Fpasswd",
    "/static/page.js%00",
    "/static/index.html",
    "/static/",
    "//etc/passwd",
    "/api/v1/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/page.js/..%2f..%2f..%2fetc%2fpasswd",
]


class Touches(FileSystemEventHandler):
    """Every inotify event (opens, reads-closes, writes, creates) under a folder."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        with self.lock:
            self.events.append(f"{event.event_type} {event.src_path!r}")


def listing(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            out[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[Path, Path, Touches]]:
    """``run/`` (the daemon's config, state and inbox) beside ``outside/`` (watched)."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_text("root;secret;password 1\n")
    (outside / "dir" / "ghost.folded").write_text("planted;stack 7\n")
    touches = Touches()
    observer = Observer()
    observer.schedule(touches, str(outside), recursive=True)
    observer.start()
    try:
        yield tmp_path / "run", outside, touches
    finally:
        observer.stop()
        observer.join(10)


def test_hostile_names_in_requests_touch_nothing_outside(
    layout: tuple[Path, Path, Touches],
) -> None:
    run, outside, touches = layout
    before = listing(outside)
    daemon = start_daemon(run, token=TOKEN)
    try:
        statuses = []
        for name in TRAVERSALS:
            for route in ("folded", "flamegraph", "pprof", "diff"):
                path = f"/api/v1/{route}?target={name}"
                statuses.append(request(daemon, path, f"Bearer {TOKEN}"))
        for path in PATHS:
            statuses.append(request(daemon, path, f"Bearer {TOKEN}"))
        assert set(statuses) <= {400, 404}, statuses
        daemon.deliver("ghost", b"main;inside 3\n")
        wait_until("bucket persisted", lambda: any((run / "state").rglob("*.gz")), 30)
    finally:
        assert daemon.stop() == 0
    assert listing(outside) == before
    assert touches.events == []
    print(f"\nFIGURE case13 requests={len(statuses)} outside-events={len(touches.events)}")


def test_a_symlink_planted_in_the_inbox_is_not_followed(
    layout: tuple[Path, Path, Touches],
) -> None:
    run, outside, touches = layout
    (run / "inbox").mkdir(parents=True)
    os.mkfifo(run / "inbox" / "ghost.txt")  # a FIFO must not block the inbox either
    (run / "inbox" / "ghost.folded").symlink_to(outside / "secret")
    daemon = start_daemon(run, token=TOKEN)
    try:
        inbox = run / "inbox"
        wait_until("symlink handled", lambda: not (inbox / "ghost.folded").is_symlink(), 30)
        wait_until("FIFO handled", lambda: not (inbox / "ghost.txt").exists(), 30)
        daemon.deliver("ghost", b"main;after 2\n")
        wait_until("inbox still works", lambda: b"after" in daemon.get(FOLDED)[1], 30)
        status, body = daemon.get(FOLDED)
        assert status == 200 and b"secret" not in body
    finally:
        assert daemon.stop() == 0
    time.sleep(0.5)  # let the observer thread hand over any late event
    assert touches.events == []
    assert (run / "inbox" / "ghost.folded.rejected").is_symlink()


def test_a_symlink_planted_in_the_state_directory_is_not_followed(
    layout: tuple[Path, Path, Touches],
) -> None:
    run, outside, touches = layout
    (run / "state").mkdir(parents=True)
    (run / "state" / "ghost").symlink_to(outside / "dir", target_is_directory=True)
    before = listing(outside)
    daemon = start_daemon(run, token=TOKEN)
    try:
        daemon.deliver("ghost", b"main;inside 3\n")
        status, body = 0, b""

        def served() -> bool:
            nonlocal status, body
            status, body = daemon.get("/api/v1/folded?target=ghost&window=1h")
            return b"inside" in body

        wait_until("profile ingested", served, 30)
        time.sleep(5)  # buckets are 2 s: at least one write would have happened
    finally:
        assert daemon.stop() == 0
    assert b"planted" not in body
    assert listing(outside) == before
    assert touches.events == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "control", "two-lines", "folder"])
def test_a_hostile_token_file_is_refused_at_config_load(tmp_path: Path, kind: str) -> None:
    """/dev/zero never ends, a FIFO blocks, a token no header can carry never matches."""
    path = tmp_path / "token"
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "control":
        path.write_bytes(b"s3cr\x1bet\n")
    elif kind == "two-lines":
        path.write_text("s3cret\nother\n")
    else:
        path.mkdir()
    text = (
        f'[server]\ntoken_file = "{path}"\n[storage]\nstate_dir = "/tmp/s"\n'
        '[[targets]]\nname = "a"\nall = true\n'
    )
    with pytest.raises(ConfigError, match="token_file"):
        parse_config(text, "t.toml")
