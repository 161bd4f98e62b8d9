"""No credentials in the repository, none in prefect.yaml / profiles.yml, and everything the
project starts binds to 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from clickstream import settings

# --- (a) a credential scanner over every git-tracked file -------------------------------------
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b")
AWS_SECRET = re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}")
# key = value / key: value where the key names a secret.
SECRET_ASSIGN = re.compile(
    r"""(?ix)
    (?P<key>[a-z0-9_.-]*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)[a-z0-9_]*)
    ["']?\s*(?::|=)\s*
    (?P<value>.*)$
    """
)
# scheme://user:password@host
URL_CREDENTIALS = re.compile(
    r"(?i)\b[a-z][a-z0-9+.-]*://(?P<user>[^\s/:@'\"]+):(?P<pw>[^\s/@'\"]+)@"
)
PLACEHOLDER = re.compile(
    r"^(?:\{[^}]*\}|\$\{[^}]*\}|\$[A-Z_]+|<[^>]*>|%s|\*+|x+|PASSWORD|password|pass|secret|\.\.\.)$"
)
CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".ini", ".cfg", ".env", ".example", ".properties", ""}


def _is_reference(value: str) -> bool:
    """env var / template references, empty values, code expressions: not a literal."""
    v = value.strip().rstrip(",;").strip()
    return (
        not v
        or "env_var(" in v
        or "{{" in v
        or "${" in v
        or "os.environ" in v
        or "getenv" in v
        or v in {'""', "''", "null", "~", "None"}
    )


def _literal_secret(value: str, suffix: str) -> bool:
    v = value.strip()
    v = re.split(r"\s+#", v, maxsplit=1)[0].strip().rstrip(",;")
    if _is_reference(v):
        return False
    quoted = re.match(r"""^[rbfu]?(["'])(?P<q>.*?)\1""", v)
    if quoted:
        inner = quoted.group("q")
        return bool(inner) and not _is_reference(inner) and not PLACEHOLDER.match(inner)
    # Unquoted values are literals in config files (YAML, .env, ini); in code they are
    # expressions (a variable, a call), which the quoted-literal rule above covers.
    if suffix in CONFIG_SUFFIXES:
        return not PLACEHOLDER.match(v) and not v.startswith(("str", "Field(", "|", ">"))
    return False


def scan_text(text: str, name: str = "<text>") -> list[str]:
    """Credential-looking strings in ``text``, as ``name:line: why``."""
    suffix = Path(name).suffix
    findings: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{n}"
        if PRIVATE_KEY.search(line):
            findings.append(f"{where}: private key block")
        if AWS_KEY_ID.search(line):
            findings.append(f"{where}: AWS access key id")
        if AWS_SECRET.search(line):
            findings.append(f"{where}: AWS secret access key")
        for m in URL_CREDENTIALS.finditer(line):
            if not PLACEHOLDER.match(m.group("pw")) and not _is_reference(m.group("pw")):
                findings.append(f"{where}: URL with user:password@")
        m = SECRET_ASSIGN.search(line)
        if m and _literal_secret(m.group("value"), suffix):
            findings.append(f"{where}: literal value for {m.group('key')!r}")
    return findings


def tracked_files() -> list[Path]:
    root = settings.project_dir()
    out = subprocess.run(
        ["git", "--no-optional-locks", "ls-files", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [root / p for p in out.split("\0") if p]


def test_no_credentials_in_tracked_files():
    files = tracked_files()
    assert len(files) > 20 and any(f.name == "profiles.yml" for f in files)
    findings: list[str] = []
    scanned = 0
    for path in files:
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        scanned += 1
        findings += scan_text(
            data.decode("utf-8", "replace"), str(path.relative_to(settings.project_dir()))
        )
    assert scanned > 20
    assert not findings, "\n".join(findings)


# Fakes are assembled at run time so this file itself stays clean for the scan above.
FAKES = [
    ("-----BEGIN " + "RSA PRIVATE KEY-----", "x.pem", "private key"),
    ("-----BEGIN " + "OPENSSH PRIVATE KEY-----", "id", "private key"),
    ("key_id = " + "AKIA" + "IOSFODNN7EXAMPLE", "x.py", "AWS access key id"),
    (
        "aws_secret_" + "access_key = " + "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "credentials",
        "AWS secret",
    ),
    ("      pass" + "word: hunter2", "profiles.yml", "literal value"),
    ("      pass" + 'word: "hunter2"', "profiles.yml", "literal value"),
    ("CLICKSTREAM_PG_PASS" + "WORD=hunter2", ".env", "literal value"),
    ('conn(user="u", pass' + 'word="hunter2")', "x.py", "literal value"),
    ("PG_PASS" + 'WORD = "hunter2"', "x.py", "literal value"),
    ("url: postgresql://clickstream:" + "hunter2@db:5432/x", "a.yaml", "URL with user:password@"),
    ('DSN = "postgresql+asyncpg://u:' + 's3cr3t@127.0.0.1/prefect"', "x.py", "URL with user"),
    ("api_" + "key: 'pnu_abc123'", "prefect.yaml", "literal value"),
]


@pytest.mark.parametrize(("line", "name", "why"), FAKES)
def test_scanner_catches_fake_secrets(line, name, why):
    findings = scan_text(f"first line\n{line}\n", name)
    assert findings and why in findings[0], findings
    assert findings[0].startswith(f"{name}:2:")


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("password: \"{{ env_var('CLICKSTREAM_PG_PASSWORD', '') }}\"", "profiles.yml"),
        ('password = os.environ.get("CLICKSTREAM_PG_PASSWORD", "")', "warehouse.py"),
        ("CLICKSTREAM_PG_PASSWORD=", ".env.postgres.example"),
        ("# URL=postgresql+asyncpg://USER:PASSWORD@HOST:5432/prefect", ".env.postgres.example"),
        ('return f"postgresql://{user}:{password}@{host}:{port}/{db}"', "warehouse.py"),
        ("password: ${PG_PASSWORD}", "compose.yaml"),
        ("auth = f'{user}:{password}' if password else user", "warehouse.py"),
        ("| `CLICKSTREAM_PG_HOST/PORT/USER/PASSWORD/DATABASE` | `127.0.0.1` |", "README.md"),
    ],
)
def test_scanner_allows_references(line, name):
    assert scan_text(line, name) == []


# --- (b) deployment and dbt configuration carry no literal credentials -------------------------
SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|api[_-]?key|credential")


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, node


@pytest.mark.parametrize("rel", ["prefect.yaml", "dbt/profiles.yml", "dbt/dbt_project.yml"])
def test_config_files_have_no_literal_credentials(rel):
    path = settings.project_dir() / rel
    text = path.read_text(encoding="utf-8")
    assert scan_text(text, rel) == []
    for keys, value in _walk(yaml.safe_load(text)):
        dotted = ".".join(keys)
        if isinstance(value, str) and re.search(r"://[^/\s]*:[^/\s]*@", value):
            raise AssertionError(f"{rel}: {dotted}: URL with credentials")
        if keys and SECRET_KEY.search(keys[-1]) and value not in (None, ""):
            # Only an env-var reference whose default is empty is acceptable.
            m = re.fullmatch(
                r"\{\{\s*env_var\('([A-Z0-9_]+)'(?:,\s*'([^']*)')?\)\s*\}\}", str(value)
            )
            assert m, f"{rel}: {dotted} is a literal, not an env_var reference: {value!r}"
            assert not m.group(2), f"{rel}: {dotted} has a literal default {m.group(2)!r}"
        if isinstance(value, str) and "PREFECT_API_KEY" in value:
            raise AssertionError(f"{rel}: {dotted} mentions PREFECT_API_KEY")


def test_profiles_postgres_password_comes_from_env_only():
    profiles = yaml.safe_load((settings.dbt_project_dir() / "profiles.yml").read_text())
    pg = profiles["clickstream"]["outputs"]["postgres"]
    assert pg["password"] == "{{ env_var('CLICKSTREAM_PG_PASSWORD', '') }}"
    assert "password" not in profiles["clickstream"]["outputs"]["duckdb"]


def test_prefect_yaml_sets_no_environment_secrets():
    doc = yaml.safe_load(settings.prefect_yaml_path().read_text())
    for dep in doc["deployments"]:
        env = ((dep.get("job_variables") or {}).get("env")) or {}
        assert not [k for k in env if SECRET_KEY.search(k)], dep["name"]
        assert not SECRET_KEY.search(" ".join(map(str, (dep.get("parameters") or {}).keys())))


# --- (c) everything the project starts binds to 127.0.0.1 --------------------------------------
LOOPBACK = "127.0.0.1"


class FakePopen:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def __init__(self, argv, env=None, **kw):
        FakePopen.calls.append((list(argv), dict(env or {})))
        self.pid = 999_999_999  # never a real process; nothing is ever signalled


@pytest.fixture
def fake_spawn(tmp_path, monkeypatch):
    from clickstream.local import stack as stack_mod

    FakePopen.calls = []
    monkeypatch.setattr(stack_mod.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(stack_mod.Stack, "wait_healthy", lambda self, timeout=120.0: None)
    cfg = stack_mod.StackConfig(
        state_dir=tmp_path / "state", port=stack_mod.free_port(), workers=2, scheduler=False
    )
    return stack_mod, cfg


def _host(url: str) -> str:
    return urlparse(url).hostname or ""


def test_server_and_workers_bind_and_talk_to_loopback_only(fake_spawn, request):
    stack_mod, cfg = fake_spawn
    stack = stack_mod.Stack(cfg)
    stack.up()  # server + 2 workers (each with its warm server), all through the fake Popen
    request.addfinalizer(stack.down)  # removes the warm servers' private directories
    assert len(FakePopen.calls) == 5
    (server_argv, server_env), *rest = FakePopen.calls
    warms = [c for c in rest if c[0][1:3] == ["-m", "clickstream.warm"]]
    workers = [c for c in rest if c not in warms]
    assert len(warms) == 2 and len(workers) == 2

    # Warm servers listen on a Unix socket file only (no TCP port), one per worker.
    sockets = []
    for argv, _env in warms:
        assert len(argv) == 4 and argv[3].endswith(".sock") and argv[3].startswith("/")
        sockets.append(argv[3])
    assert sorted(env["CLICKSTREAM_WARM_SOCKET"] for _, env in workers) == sorted(sockets)

    # The server (`prefect server start` through clickstream.local.prefect_server's SQLite fix):
    # --host 127.0.0.1 on the command line and in its settings.
    assert server_argv[1:5] == ["-m", "clickstream.local.prefect_server", "server", "start"]
    assert server_argv[server_argv.index("--host") + 1] == LOOPBACK
    assert server_argv[server_argv.index("--port") + 1] == str(cfg.port)
    assert server_env["PREFECT_SERVER_API_HOST"] == LOOPBACK
    for key in ("PREFECT_API_URL", "PREFECT_UI_URL", "PREFECT_UI_API_URL"):
        assert _host(server_env[key]) == LOOPBACK, key
    assert server_env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"

    # Workers open no port (no --with-healthcheck) and talk only to the loopback API.
    for argv, env in workers:
        assert argv[1:3] == ["worker", "start"]
        assert "--with-healthcheck" not in argv and "--host" not in argv
        assert _host(env["PREFECT_API_URL"]) == LOOPBACK
        assert (
            "PREFECT_WORKER_WEBSERVER_HOST" not in env
            or env["PREFECT_WORKER_WEBSERVER_HOST"] == LOOPBACK
        )
        assert env["PREFECT_RUNNER_HEARTBEAT_FREQUENCY"] == "30"  # feeds the zombie automation

    # No argv or env value anywhere binds to all interfaces.
    for argv, env in FakePopen.calls:
        blob = " ".join(argv) + " " + " ".join(f"{k}={v}" for k, v in env.items())
        assert "0.0.0.0" not in blob and "[::]" not in blob
    assert stack.pids()["server"] == 999_999_999


def test_server_env_functions_use_loopback(fake_spawn):
    stack_mod, cfg = fake_spawn
    for env in (stack_mod.client_env(cfg), stack_mod.server_env(cfg), stack_mod.worker_env(cfg)):
        for key, value in env.items():
            if key.endswith("_URL") and "://" in value and not value.startswith("sqlite"):
                assert _host(value) == LOOPBACK, (key, value)
    assert cfg.api_url.startswith(f"http://{LOOPBACK}:")


def test_stack_refuses_a_taken_port_instead_of_binding_elsewhere(fake_spawn):
    import socket

    stack_mod, cfg = fake_spawn
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        cfg.port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match="is taken"):
            stack_mod.Stack(cfg).start_server()
    assert FakePopen.calls == []


def test_postgres_defaults_are_loopback(monkeypatch):
    for var in (
        "CLICKSTREAM_PG_HOST",
        "CLICKSTREAM_PREFECT_DATABASE_URL",
        "CLICKSTREAM_PG_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    from clickstream.adapters.warehouse import pg_dsn
    from clickstream.local.postgres import prefect_database_url

    assert _host(pg_dsn("x")) == LOOPBACK
    assert _host(prefect_database_url()) == LOOPBACK
    assert urlparse(pg_dsn("x")).password is None  # no password unless the env sets one


def test_no_source_file_binds_all_interfaces():
    offenders = []
    for path in tracked_files():
        if path.suffix in {".py", ".yaml", ".yml", ".toml", ""} and path.is_file():
            if path.name == "test_security.py":
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if "0.0.0.0" in text or re.search(r"""host\s*=\s*['"]{2}""", text):
                offenders.append(str(path))
    assert not offenders, offenders
