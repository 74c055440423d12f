"""What services.cim-leaf.hub gives nats-server, without nixpkgs: the module's
pure part (nixos-module/leaf-node.nix, builtins only) evaluated by Nix, and
the settings it renders checked and run by the real nats-server, in the file
nixpkgs' services.nats would write (its server_name, port and
jetstream.store_dir added, and the listener's loopback host the module sets)."""
import json
import shutil
import signal
import subprocess
import urllib.request

import pytest

from harness import BIN, ROOT, NatsServer, free_port, leaf_config, make_certificates, wait_until
from nats_client import Client
from test_nix import nix
from topology import aggregate

NODE = "leaf-01"
LEAF_NODE_NIX = ROOT / "nixos-module" / "leaf-node.nix"
# The module's credentialsDir: systemd's $CREDENTIALS_DIRECTORY of nats.service.
CREDENTIALS_DIR = "/run/credentials/nats.service"


def leaf_node(expression, **args):
    """`expression` over `l` = import nixos-module/leaf-node.nix and `a` = args, evaluated by Nix."""
    result = nix("--eval", "--strict", "--json", "--argstr", "args", json.dumps(args), "-E",
                 f"{{ args }}: let l = import {LEAF_NODE_NIX}; a = builtins.fromJSON args; in {expression}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def nix_matches(pattern, text):
    """Whether Nix's builtins.match (as a generated strMatching type) takes text."""
    result = nix("--eval", "--argstr", "p", pattern, "--argstr", "s", text,
                 "-E", "{ p, s }: builtins.match p s != null")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hub_option(urls, credentials=None, ca=None, cert=None, key=None, monitor_port=8222):
    """services.cim-leaf.hub as the module's submodule hands it over, defaults included."""
    return {"urls": urls, "credentials": credentials, "monitorPort": monitor_port,
            "tls": {"caFile": ca, "certFile": cert, "keyFile": key}}


def nats_settings(hub, credentials_dir=CREDENTIALS_DIR, node=NODE):
    return leaf_node("l.natsSettings { inherit (a) nodeId hub credentialsDir; }", nodeId=node, hub=hub,
                     credentialsDir=credentials_dir)


def nats_conf(settings, node=NODE, port=4222, store_dir="/var/lib/nats"):
    """The rest of nixpkgs' services.nats settings around the module's."""
    return {**settings, "host": "127.0.0.1", "server_name": node, "port": port,
            "jetstream": {**settings["jetstream"], "store_dir": str(store_dir)}}


def check(tmp_path, conf):
    """`nats-server -t`, as services.nats.validateConfig runs it in the build sandbox."""
    path = tmp_path / "nats.conf"
    path.write_text(json.dumps(conf))
    return subprocess.run(["nats-server", "--config", str(path), "-t"], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/bin"})


class RenderedServer(NatsServer):
    """nats-server running a whole rendered config file."""

    def __init__(self, workdir, conf, name):
        super().__init__(workdir, port=conf["port"], name=name)
        self.conf = conf

    def _write_conf(self):
        path = self.workdir / f"{self.name}.json"
        path.write_text(json.dumps(self.conf))
        return path

    def log_text(self):
        return (self.workdir / f"{self.name}.log").read_text()


def http_json(url):
    with urllib.request.urlopen(url, timeout=2) as answer:
        return json.load(answer)


def leaf_server(tmp_path, hub, credentials_dir, node=NODE):
    """The module's leaf node for `hub`, started, with its monitoring port."""
    port = free_port()
    conf = nats_conf(nats_settings(hub, str(credentials_dir), node), node, port, tmp_path / f"js-{node}")
    server = RenderedServer(tmp_path, conf, node).start()
    server.monitor = f"http://{conf['http']}"
    return server


def leafnode_count(server):
    return http_json(f"{server.monitor}/leafz")["leafnodes"]


HUB_URLS = {"nats-leaf://hub:7422": True, "tls://hub-1.example": True, "tls://[::1]:7422": True,
            "nats-leaf://10.0.0.1:65535": True, "nats://hub:7422": False, "tls://u:p@hub:7422": False,
            "tls://hub:0": False, "tls://hub:65536": False, "wss://hub": False, "tls://hub:7422/x": False}


@pytest.mark.parametrize("url,valid", HUB_URLS.items(), ids=list(HUB_URLS))
def test_hub_url_pattern(url, valid):
    """hub.urls' type: the leafnode schemes nats-server takes, no user:password@ for the store."""
    assert leaf_node("builtins.match l.hubUrlPattern a.url != null", url=url) is valid


def test_url_checks_behind_the_assertions_and_warnings():
    urls = ["nats-leaf://hub:7422", "nats-leaf://127.0.0.1:7422", "nats-leaf://[::1]", "tls://remote:7422",
            "nats://localhost:4222", "nats://10.1.1.1:4222"]
    assert leaf_node("map l.isLoopbackUrl a.urls", urls=urls) == [False, True, True, False, True, False]
    assert leaf_node("l.plaintextRemoteUrls \"nats-leaf\" a.urls", urls=urls) == ["nats-leaf://hub:7422"]
    assert leaf_node("l.plaintextRemoteUrls \"nats\" a.urls", urls=urls) == ["nats://10.1.1.1:4222"]
    assert leaf_node("l.mixesSchemes a.urls", urls=["tls://a:1", "nats-leaf://b:1"]) is True
    assert leaf_node("l.mixesSchemes a.urls", urls=["tls://a:1", "tls://b:1"]) is False


NODE_IDS = {"leaf-01": True, "Leaf_9": True, "-": True, "a.b": False, "a*b": False, "a>b": False, "a b": False}


@pytest.mark.parametrize("node,valid", NODE_IDS.items(), ids=list(NODE_IDS))
def test_node_id_type_admits_only_valid_domains_and_server_names(tmp_path, node, valid):
    """The module makes the node id the leaf's JetStream domain and server name.
    The generated node.id type (as Nix reads its pattern) must refuse every id
    nats-server refuses as either, so no assertion is needed for it."""
    schema = json.loads((ROOT / "proto" / "config.schema.json").read_text())
    pattern = schema["properties"]["node"]["properties"]["id"]["pattern"]
    assert nix_matches(pattern, node) is valid
    server = RenderedServer(tmp_path, {"server_name": node, "port": free_port(), "host": "127.0.0.1",
                                       "jetstream": {"domain": node, "store_dir": str(tmp_path / "js")}}, "node")
    if valid:
        server.start().stop()
    else:
        with pytest.raises(RuntimeError, match="invalid domain name|server name cannot contain spaces"):
            server.start()


def test_the_leaf_watches_its_nats_server_under_a_name_the_option_and_the_daemon_take(tmp_path):
    """services.cim-leaf.hub adds watchedUnits to settings.watch.units: each
    must pass the generated option type (its pattern, as Nix reads it), and
    the rendered settings, with a unit of the user's beside them, the
    build-time `cim-leaf --check-config`."""
    units = leaf_node("l.watchedUnits")
    assert units == ["nats.service"]
    schema = json.loads((ROOT / "proto" / "config.schema.json").read_text())
    pattern = schema["properties"]["watch"]["properties"]["units"]["items"]["pattern"]
    for unit in units:
        assert nix_matches(pattern, unit), f"{unit} does not match the watch.units type {pattern}"
    settings = leaf_node("l.daemonSettings { inherit (a) nodeId hub port; }", nodeId=NODE,
                         hub=hub_option(["tls://hub:7422"]), port=4222)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({**settings, "node": {"id": NODE},
                                  "watch": {"units": [*units, "cim-*.service"], "critical": units}}))
    result = subprocess.run([str(BIN), "--check-config", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_build_time_check_does_not_read_the_credentials_file(tmp_path):
    """nixpkgs' validateConfig runs `nats-server -t` where the credentials file
    does not exist (LoadCredential= delivers it at run time): it passes."""
    settings = nats_settings(hub_option(["tls://hub-1.example:7422", "tls://hub-2.example:7422"],
                                        credentials="/run/secrets/hub.creds"))
    (remote,) = settings["leafnodes"]["remotes"]
    assert remote == {"urls": ["tls://hub-1.example:7422", "tls://hub-2.example:7422"],
                      "credentials": f"{CREDENTIALS_DIR}/hub.creds", "tls": {}}
    assert settings["http"] == "127.0.0.1:8222" and settings["jetstream"] == {"domain": NODE}
    result = check(tmp_path, nats_conf(settings))
    assert result.returncode == 0, result.stderr


def test_the_build_time_check_reads_tls_files_so_the_module_checks_without_them(tmp_path):
    settings = nats_settings(hub_option(["tls://hub:7422"], ca="/etc/ssl/cim/ca.pem", cert="/var/lib/c.pem",
                                        key="/var/lib/k.pem"))
    (remote,) = settings["leafnodes"]["remotes"]
    assert remote["tls"] == {"ca_file": f"{CREDENTIALS_DIR}/hub-ca.pem", "cert_file": f"{CREDENTIALS_DIR}/hub-cert.pem",
                             "key_file": f"{CREDENTIALS_DIR}/hub-key.pem"}
    result = check(tmp_path, nats_conf(settings))
    assert result.returncode != 0 and f"{CREDENTIALS_DIR}/hub-" in result.stderr, result.stderr
    checkable = leaf_node("l.withoutRuntimeTlsFiles { settings = a.settings; credentialsDir = a.dir; }",
                          settings=nats_conf(settings), dir=CREDENTIALS_DIR)
    assert checkable["leafnodes"]["remotes"][0]["tls"] == {}  # TLS stays required
    assert {k: v for k, v in checkable.items() if k != "leafnodes"} == \
        {k: v for k, v in nats_conf(settings).items() if k != "leafnodes"}
    result = check(tmp_path, checkable)
    assert result.returncode == 0, result.stderr


def test_credential_files_are_every_hub_file_by_name():
    hub = hub_option(["tls://hub:7422"], credentials="/run/keys/hub.creds", ca="/nix/store/x-ca.pem")
    assert leaf_node("l.credentialFiles a.hub", hub=hub) == {"hub.creds": "/run/keys/hub.creds",
                                                            "hub-ca.pem": "/nix/store/x-ca.pem"}


@pytest.fixture
def tls_hub(tmp_path):
    """A hub whose leafnode port requires TLS, with its CA."""
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    port = free_port()
    hub = NatsServer(tmp_path, name="hub", extra=(
        f'leafnodes {{ listen: 127.0.0.1:{port}, tls {{ cert_file: "{certs}/server.pem", '
        f'key_file: "{certs}/server.key" }} }}')).start()
    hub.leaf_url = f"tls://127.0.0.1:{port}"
    hub.ca = certs / "ca.pem"
    yield hub
    hub.stop()


def test_the_leaf_node_reaches_a_tls_hub_with_the_ca_from_its_credentials(tmp_path, tls_hub):
    credentials = tmp_path / "credentials"  # what LoadCredential= lays out
    credentials.mkdir()
    shutil.copy(tls_hub.ca, credentials / "hub-ca.pem")
    leaf = leaf_server(tmp_path, hub_option([tls_hub.leaf_url], ca="/etc/ssl/cim/ca.pem"), credentials)
    try:
        wait_until(lambda: leafnode_count(leaf) == 1, 10, what="the leaf node connected")
        # The hub reaches the leaf's JetStream through its domain.
        with Client(tls_hub.port) as client:
            info = json.loads(client.request(f"$JS.{NODE}.API.INFO", b"").data)
        assert info.get("domain") == NODE, info
    finally:
        leaf.stop()


def test_a_tls_url_never_falls_back_to_plain_text(tmp_path):
    """nats-server speaks plain text to a tls:// remote without a tls block
    when the hub does not ask for TLS; the module always writes one."""
    port = free_port()
    hub = NatsServer(tmp_path, name="hub", extra=f"leafnodes {{ listen: 127.0.0.1:{port} }}").start()
    leaf = leaf_server(tmp_path, hub_option([f"tls://127.0.0.1:{port}"]), tmp_path)
    try:
        wait_until(lambda: "TLS" in leaf.log_text() and "handshake" in leaf.log_text(), 10,
                   what="a failed TLS handshake")
        assert leafnode_count(leaf) == 0
    finally:
        leaf.stop()
        hub.stop()


def test_the_leaf_node_authenticates_with_the_credentials_file(tmp_path, js_client):
    """An operator-mode hub takes the leaf only with the user JWT of the
    credentials file in the credentials directory, and binds it to its account."""
    auth = tmp_path / "auth"
    auth.mkdir()
    result = subprocess.run(["node", "tests/js/auth.mjs", str(auth)], cwd=ROOT, check=True, capture_output=True,
                            text=True)
    operator = json.loads(result.stdout)["operator"]
    port, monitor = free_port(), free_port()
    hub = NatsServer(tmp_path, name="hub", extra=(open(operator["conf"]).read()
                                                  + f"\nleafnodes {{ listen: 127.0.0.1:{port} }}\n"
                                                  + f"http: 127.0.0.1:{monitor}\n")).start()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    leaf = leaf_server(tmp_path, hub_option([f"nats-leaf://127.0.0.1:{port}"], credentials="/run/keys/hub.creds"),
                       credentials)
    try:
        wait_until(lambda: "Credentials file" in leaf.log_text(), 10, what="the missing credentials file reported")
        assert leafnode_count(leaf) == 0
        shutil.copy(operator["creds"], credentials / "hub.creds")
        wait_until(lambda: leafnode_count(leaf) == 1, 10, what="the leaf node connected")
        (seen,) = http_json(f"http://127.0.0.1:{monitor}/leafz")["leafs"]
        assert seen["account"] == operator["account_public_key"], seen
    finally:
        leaf.stop()
        hub.stop()


def stream_subjects(server, stream, api="$JS.API"):
    """subject -> number of messages in `stream`."""
    with Client(server.port) as client:
        info = json.loads(client.request(f"{api}.STREAM.INFO.{stream}", b'{"subjects_filter": ">"}').data)
    assert "error" not in info, info
    return info["state"].get("subjects", {})


def test_rendered_leaves_keep_their_own_events_and_the_hub_sources_them(tmp_path, daemons, notify):
    """Two leaf nodes and their daemons, all as the module renders them: each
    leaf's stream holds its own node's events only (every stream's subjects
    are interest the leaf node connections carry, so `all-nodes` would store
    the other leaf's too), and a hub stream sourcing both holds each once."""
    port = free_port()
    hub = NatsServer(tmp_path, name="hub", extra=(
        f"leafnodes {{ listen: 127.0.0.1:{port} }}\n"
        f'jetstream {{ store_dir: "{tmp_path}/js-hub", domain: hub }}')).start()
    leaves = {}
    try:
        for node in ("leaf-a", "leaf-b"):
            monitor = free_port()
            option = hub_option([f"nats-leaf://127.0.0.1:{port}"], monitor_port=monitor)
            server = leaf_server(tmp_path, option, tmp_path, node)
            settings = leaf_node("l.daemonSettings { inherit (a) nodeId hub port; }", nodeId=node, hub=option,
                                 port=server.port)
            settings["uplink"]["interval"] = "250ms"
            config = leaf_config(None, node_id=node, **settings)
            after = len(notify.snapshot())
            daemon = daemons(config, notify=notify, name=node).start()
            notify.wait_for("READY", "1", timeout=10, after=after)
            leaves[node] = (server, daemon)

        def health(node):
            with Client(leaves[node][0].port) as client:
                return json.loads(client.request(f"cim.leaf.{node}.health", b"").data)
        for node, (server, daemon) in leaves.items():
            wait_until(lambda: health(node)["checks"]["uplink"]["state"] == "up", 10, what=f"{node}'s uplink")
            daemon.signal(signal.SIGHUP)
            wait_until(lambda: health(node)["checks"]["events"]["pending"] == 0, 10, what=f"{node}'s events")
        own = {}
        for node, (server, daemon) in leaves.items():
            own[node] = stream_subjects(server, "CIM_LEAF_EVENTS")
            assert own[node] and all(subject.startswith(f"cim.leaf.{node}.events.") for subject in own[node]), own
        with Client(hub.port) as client:
            aggregate(client, hub, list(leaves))
        expected = {subject: count for counts in own.values() for subject, count in counts.items()}
        wait_until(lambda: stream_subjects(hub, "CIM_FLEET_EVENTS", "$JS.hub.API") == expected, 20, interval=0.5,
                   what="the hub's stream to hold every leaf's events once")
    finally:
        for server, daemon in leaves.values():
            daemon.stop()
            server.stop()
        hub.stop()
