"""Bad input: every invalid config gets one clear line that says what and
where, exit 78 (EX_CONFIG) within a second, no crash, for --check-config and
for a real start alike."""
import os
import re
import signal
import subprocess
import time

import pytest

from harness import BIN

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(20)) + "node:\n  labels: *u\n"

# (name, file content, what the error line must contain)
CASES = [
    ("unknown key", "nodes:\n  id: a\n", ":1:1: nodes: unknown key (did you mean node?)"),
    ("unknown nested key", "nats:\n  reconect: {wait: 1s}\n", ":2:3: nats.reconect: unknown key (did you mean reconnect?)"),
    ("merge key", "log: &b {level: info}\nnode:\n  <<: *b\n",
     ":3:3: node: YAML merge keys (<<) are not supported; write the keys out"),
    ("string for a section", "nats: nats://x\n", ':1:7: nats: expected a mapping, got "nats://x"'),
    ("list for a string", "node:\n  id: [a]\n", ":2:7: node.id: expected NATS token characters"),
    ("bad node id", "node: {id: leaf.01}\n", 'node.id: expected NATS token characters (letters, digits, \'_\' and \'-\'), got "leaf.01"'),
    ("wildcard node id", "node: {id: '*'}\n", 'node.id: expected NATS token characters'),
    ("labels not a map", "node: {labels: [a]}\n", "node.labels: expected a mapping of strings to strings, got a list"),
    ("nested label value", "node: {labels: {a: {b: c}}}\n", "node.labels: expected a mapping of strings to strings, got a mapping"),
    ("empty server list", "nats: {servers: []}\n", "nats.servers: must list at least 1 item"),
    ("bad URL scheme", "nats: {servers: ['http://h:4222']}\n", 'nats.servers: expected a URL like nats://host:4222 or tls://host:4222 (no user or password in it), got "http://h:4222"'),
    ("password in URL", "nats: {servers: ['nats://u:p@h:4222']}\n", "nats.servers: expected a URL like"),
    ("servers not a list", "nats: {servers: nats://h:4222}\n", "nats.servers: expected a list, each item a URL like"),
    ("servers null", "nats: {servers: ~}\n",
     "nats.servers: expected a list, each item a URL like nats://host:4222 or tls://host:4222 (no user or password "
     "in it), got null"),
    ("zero interval", "heartbeat: {interval: 0s}\n", 'heartbeat.interval: must be at least 100ms, got "0s"'),
    ("negative interval", "heartbeat: {interval: -5s}\n", 'heartbeat.interval: expected a duration like 500ms or 5s, got "-5s"'),
    ("word for a duration", "nats:\n  reconnect:\n    wait: soon\n", ':3:11: nats.reconnect.wait: expected a duration like 500ms or 5s, got "soon"'),
    ("huge duration", "heartbeat: {interval: 99999999999999999999999h}\n",
     'heartbeat.interval: must be at most 1h, got "99999999999999999999999h"'),
    ("number for a duration", "heartbeat: {interval: 5}\n", 'heartbeat.interval: expected a duration like 500ms or 5s, got "5"'),
    ("spool out of range", "events: {spool_bytes: 99999999999}\n", "events.spool_bytes: expected an integer from 65536 to 1073741824"),
    ("a key of an earlier version", "nats: {reconnect: {buffer_bytes: 1024}}\n", "nats.reconnect.buffer_bytes: no longer exists; events.spool_bytes bounds"),
    ("stream name with a dot", "events: {stream: {name: a.b}}\n", "events.stream.name: expected letters, digits, '_' and '-', got \"a.b\""),
    ("duplicate window over max age", "events: {stream: {max_age: 1h, duplicate_window: 2h}}\n", "events.stream.duplicate_window: must not be longer than events.stream.max_age"),
    ("unknown delivery", "events: {delivery: maybe}\n", "events.delivery: expected one of auto, jetstream, core, got \"maybe\""),
    ("bad enum", "dbus: {bus: user}\n", 'dbus.bus: expected one of system, session, none, got "user"'),
    ("bad log level", "log: {level: verbose}\n", 'log.level: expected one of trace, debug, info, warn, error, got "verbose"'),
    ("bad ready_on", "systemd: {ready_on: never}\n", "systemd.ready_on: expected one of connected, started"),
    ("prefix with wildcard", "subjects: {prefix: 'cim.>'}\n", "subjects.prefix: expected dot-separated NATS tokens without wildcards"),
    ("relative secret path", "nats: {token_file: ./token}\n", "nats.token_file: expected an absolute path or a credential name without '/'"),
    ("secret path ..", "nats: {token_file: ..}\n", "nats.token_file: is . or .., a directory, not a credential name"),
    ("long credential name", "nats: {token_file: " + "t" * 300 + "}\n",
     "nats.token_file: is a credential name of 300 bytes; a file name has at most 255"),
    ("user without password", "nats: {user: leaf}\n", "nats.user: needs nats.password_file"),
    ("two auth methods", "nats: {token_file: t, credentials_file: c}\n", "only one authentication method may be set"),
    ("cert without key", "nats: {tls: {cert_file: /c.pem}}\n", "nats.tls.cert_file and nats.tls.key_file go together"),
    ("YAML syntax error", "nats: {servers: [nats://h:4222\n", "YAML syntax error"),
    ("unterminated quote", "node:\n  domain: \"abc\n  id: x\nlog:\n  level: bogus\n",
     ":2:11: unterminated quoted string"),
    ("tab indentation", "nats:\n\tname: x\n", "YAML syntax error"),
    ("duplicate key", "log: {level: info}\nlog: {level: debug}\n", ":2:1: log: duplicate key"),
    ("two documents", "log: {level: info}\n---\nlog: {level: debug}\n", ":2:1: a second YAML document (or text YAML cannot read) starts here"),
    ("top level list", "- a\n- b\n", ":1:1: expected a mapping, got a list"),
    ("top level scalar", "hello\n", 'expected a mapping, got "hello"'),
    ("binary junk", bytes(range(256)) * 4, "not a text file: a NUL byte at offset 0"),
    ("invalid UTF-8", b"node: {domain: \xc3\x28}\n", "not a text file: invalid UTF-8 at offset 15"),
    ("overlong UTF-8", b"node: {domain: \xc0\x80}\n", "not a text file: invalid UTF-8 at offset 15"),
    ("UTF-8 surrogate", b"node: {domain: \xed\xa0\x80}\n", "not a text file: invalid UTF-8 at offset 15"),
    ("UTF-8 above U+10FFFF", b"node: {domain: \xf4\x90\x80\x80}\n", "not a text file: invalid UTF-8 at offset 15"),
    ("alias bomb", ALIAS_BOMB, "node.labels: expected a mapping of strings to strings, got a list"),
    # libstdc++'s regex recursed once per byte: these overflowed the stack (SIGSEGV).
    ("long node id", "node:\n  id: " + "a" * 30000 + "\n", ":2:7: node.id: is 30000 bytes long; at most 255"),
    ("long client name", "nats: {name: " + "a" * 30000 + "}\n", "nats.name: is 30000 bytes long; at most 255"),
    ("long server URL", "nats: {servers: [nats://" + "a" * 30000 + "]}\n",
     "nats.servers: is 30007 bytes long; at most 512"),
    ("long secret path", "nats: {token_file: /" + "a" * 30000 + "}\n",
     "nats.token_file: is 30001 bytes long; at most 4096"),
    # nats.c 3.4.1 writes the user and the client name into CONNECT unescaped: the leaf never connected.
    ("quote in client name", "nats: {name: 'cim\"leaf'}\n",
     ":1:14: nats.name: expected a name of printable ASCII characters without spaces, '\"' or '\\', "
     'got "cim\\"leaf"'),
    ("backslash in user", "nats: {user: 'a\\b', password_file: p}\n",
     ":1:14: nats.user: expected a name of printable ASCII characters other than '\"' and '\\', got \"a\\\\b\""),
    ("fields injected by the user", 'nats: {user: \'x","pass":"y\', password_file: p}\n', "nats.user: expected a name"),
    ("control character in user", 'nats: {user: "a\\u0001", password_file: p}\n',
     'nats.user: expected a name of printable ASCII characters other than \'"\' and \'\\\', got "a\\u0001"'),
    # Keys written with YAML escapes print escaped: they cannot forge a line or colour the terminal.
    ("escaped key", '"\\e[31mred\\nconfig.yaml:9:9: fake\\a": 1\n',
     ':1:1: "\\u001b[31mred\\u000aconfig.yaml:9:9: fake\\u0007": unknown key'),
    ("escaped nested key", 'nats:\n  "re\\u0008connect": {}\n', ':2:3: nats."re\\u0008connect": unknown key'),
    ("10 MB file", "#" * (10 << 20), "is larger than 1048576 bytes"),
    ("deep nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "config.yaml:1:"),
]


def check(path, *prefix):
    started = time.monotonic()
    result = subprocess.run([*prefix, str(BIN), "--check-config", "--config", str(path)],
                            capture_output=True, text=True, timeout=10)
    return result, time.monotonic() - started


@pytest.mark.parametrize("name,content,expected", CASES, ids=[c[0] for c in CASES])
def test_invalid_config_is_refused_with_a_clear_message(tmp_path, name, content, expected):
    path = tmp_path / "config.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    result, seconds = check(path)
    assert result.returncode == 78, result.stderr
    assert result.stdout == ""
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith(str(path)), "each line starts with the file"
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", result.stderr), "no control character but line ends"
    assert all(line.startswith(f"{path}:") for line in result.stderr.splitlines()), "one line each"
    assert seconds < 1.0, f"took {seconds:.2f}s"


@pytest.mark.parametrize("content,secret", [
    ("nats: {token_file: 'tQ9/x+Secret=='}\n", "Secret"),
    ("nats: {servers: ['nats://u:Sup3r@h:4222']}\n", "Sup3r"),
], ids=["secret in a *_file key", "password in a server URL"])
def test_errors_never_echo_a_secret(tmp_path, content, secret):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    result, _ = check(path)
    assert result.returncode == 78
    assert secret not in result.stderr


def test_missing_file(tmp_path):
    result, _ = check(tmp_path / "absent.yaml")
    assert result.returncode == 78
    assert result.stderr == f"{tmp_path}/absent.yaml: cannot open: No such file or directory\n"


def test_directory_instead_of_file(tmp_path):
    result, _ = check(tmp_path)
    assert result.returncode == 78
    assert "is a directory, not a regular file" in result.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/setpriv"), reason="needs setpriv to drop root")
def test_unreadable_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("log: {level: info}\n")
    path.chmod(0o000)
    tmp_path.chmod(0o755)
    result, _ = check(path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert result.returncode == 78
    assert "cannot open: Permission denied" in result.stderr


def test_fifo_instead_of_file_is_refused_at_once(tmp_path):
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    result, seconds = check(path)
    assert result.returncode == 78
    assert result.stderr == f"{path}: is not a regular file\n"
    assert seconds < 1.0


def test_secret_fifo_is_refused_at_once(daemons, tmp_path):
    os.mkfifo(tmp_path / "token")
    leaf = daemons({"nats": {"token_file": str(tmp_path / "token")}, "dbus": {"bus": "none"}}).start()
    assert leaf.wait(2) == 78
    assert f"nats.token_file: {tmp_path}/token: is not a regular file" in leaf.output()


def test_good_config_prints_nothing(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("node: {id: a}\nnats: {servers: [nats://127.0.0.1:4222], token_file: nats-token}\n")
    result, _ = check(path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_start_with_bad_config_exits_78_and_logs_the_same_line(daemons):
    leaf = daemons("heartbeat: {interval: soon}\n").start()
    assert leaf.wait(2) == 78
    assert 'heartbeat.interval: expected a duration like 500ms or 5s, got "soon"' in leaf.output()


def test_start_with_missing_secret_exits_78(daemons, tmp_path):
    leaf = daemons({"nats": {"token_file": str(tmp_path / "nope")}, "dbus": {"bus": "none"}}).start()
    assert leaf.wait(2) == 78
    # The key's place in the file, as for every other config error (yaml.safe_dump sorts the keys).
    assert (f"{leaf.config_path}:4:3: nats.token_file: {tmp_path}/nope: cannot open: No such file or directory"
            in leaf.output())


def test_reload_with_missing_secret_names_the_file_and_key(daemons, notify, tmp_path):
    config = {"dbus": {"bus": "none"}, "systemd": {"ready_on": "started"}}
    leaf = daemons(config, notify=notify).start()
    notify.wait_for("READY", "1", timeout=10)
    leaf.write_config({**config, "nats": {"token_file": str(tmp_path / "nope")}})
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log(f"reload rejected: {leaf.config_path}:4:3: nats.token_file: {tmp_path}/nope: cannot open")
    assert leaf.stop() == 0


def test_credential_name_without_credentials_directory_exits_78(daemons):
    leaf = daemons({"nats": {"token_file": "nats-token"}, "dbus": {"bus": "none"}}).start()
    assert leaf.wait(2) == 78
    assert "$CREDENTIALS_DIRECTORY is not set" in leaf.output()


def test_errors_about_a_credential_do_not_name_it(daemons, tmp_path):
    """A credential name may be the secret itself, written there by mistake."""
    leaf = daemons({"nats": {"user": "leaf", "password_file": "Sup3rS3cret"}, "dbus": {"bus": "none"}},
                   env={"CREDENTIALS_DIRECTORY": str(tmp_path)}).start()
    assert leaf.wait(2) == 78
    assert ("nats.password_file: its credential in $CREDENTIALS_DIRECTORY: cannot open: No such file or directory"
            in leaf.output())
    assert "Sup3rS3cret" not in leaf.output()


def test_credential_name_resolves_in_credentials_directory(daemons, nats_server, tmp_path, notify):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "nats-token").write_text("s3cret\n")
    nats_server.stop()
    nats_server.extra = "authorization { token: s3cret }"
    nats_server.start()
    leaf = daemons({"nats": {"servers": [nats_server.url], "token_file": "nats-token"}, "dbus": {"bus": "none"},
                    "node": {"id": "a"}},
                   notify=notify, env={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}).start()
    notify.wait_for("READY", "1", timeout=10)
    assert "s3cret" not in leaf.output()
    assert leaf.stop() == 0


def test_reload_cannot_move_to_another_bus(daemons, notify):
    config = {"dbus": {"bus": "none"}, "systemd": {"ready_on": "started"}}
    leaf = daemons(config, notify=notify).start()
    notify.wait_for("READY", "1", timeout=10)
    leaf.write_config({**config, "dbus": {"bus": "session"}})
    leaf.signal(signal.SIGHUP)
    leaf.wait_for_log(f"reload rejected: {leaf.config_path}:2:3: dbus.bus: cannot change while running; restart the "
                      "service to move to another bus")
    assert leaf.stop() == 0


def test_credentials_file_whose_jwt_would_inject_into_connect_exits_78(daemons, tmp_path):
    """nats.c reads the file itself and escapes its JWT only partly ('"' not at all)."""
    creds = tmp_path / "leaf.creds"
    creds.write_text('-----BEGIN NATS USER JWT-----\neyJhIjoiYiJ9.eyJjIjoiZCJ9.c2ln","user":"admin\n'
                     "------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAS3cret\n"
                     "------END USER NKEY SEED------\n")
    leaf = daemons({"nats": {"credentials_file": str(creds)}, "dbus": {"bus": "none"}}).start()
    assert leaf.wait(2) == 78
    assert (f"nats.credentials_file: {creds} does not hold a user JWT (three base64url parts joined by dots) in a "
            "-----BEGIN NATS USER JWT----- section") in leaf.output()
    assert "S3cret" not in leaf.output() and "admin" not in leaf.output()


@pytest.mark.parametrize("args", [["--bogus"], ["--config"], ["--version", "--check-config"], ["status", "--bus=x"]])
def test_usage_errors_exit_64_with_the_usage(args):
    result = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=10)
    assert result.returncode == 64  # EX_USAGE, as DESIGN.md says
    assert result.stderr.startswith("cim-leaf: ") and "Usage:" in result.stderr
