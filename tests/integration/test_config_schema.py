"""The printed config schema (= proto/config.schema.json) as standard JSON
Schema validators read it: every pattern is an ECMAScript regex compiled with
the u flag (ajv's default), and server URLs are checked as the daemon checks
them."""
import json
import shutil
import subprocess

import pytest

from harness import BIN

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="needs node")

# Compiles every pattern with the u flag; prints which inputs the first one matches.
SCRIPT = """
const [patterns, inputs] = JSON.parse(process.argv[1]);
const compiled = patterns.map((p) => new RegExp(p, "u"));
console.log(JSON.stringify(inputs.map((s) => compiled[0].test(s))));
"""


def patterns(schema):
    """Every pattern in the schema."""
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            found += [value] if key == "pattern" else patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            found += patterns(value)
    return found


def test_patterns_compile_with_the_u_flag_and_accept_ports_1_to_65535():
    schema = json.loads(subprocess.run([str(BIN), "--print-config-schema"], capture_output=True, text=True,
                                       check=True).stdout)
    servers = schema["properties"]["nats"]["properties"]["servers"]["items"]["pattern"]
    urls = {"nats://127.0.0.1:4222": True, "tls://[::1]:65535": True, "nats://h": True, "nats://h:1": True,
            "nats://h:0": False, "nats://a:99999": False, "nats://h:65536": False, "nats://[::1[": False,
            "nats://u:p@h:4222": False}
    result = subprocess.run(["node", "-e", SCRIPT, json.dumps([[servers, *patterns(schema)], list(urls)])],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert dict(zip(urls, json.loads(result.stdout))) == urls
