"""The CIM leaf topology on loopback: a hub nats-server with a leafnode port
and JetStream in its own domain, and leaf nats-servers connected to it as
NATS leaf nodes, each with JetStream in its own domain (= node id) and a
monitoring endpoint, as the NixOS module sets them up (services.cim-leaf.hub)."""
from harness import NatsServer, free_port


class Hub(NatsServer):
    def __init__(self, workdir, name="hub"):
        self.leafnode_port = free_port()
        super().__init__(workdir, name=name, extra=(
            f"leafnodes {{ listen: 127.0.0.1:{self.leafnode_port} }}\n"
            f'jetstream {{ store_dir: "{workdir}/js-{name}", domain: {name} }}\n'))
        self.leafnode_url = f"nats-leaf://127.0.0.1:{self.leafnode_port}"


class LeafServer(NatsServer):
    """A leaf's own nats-server: a leaf node of `hub`, JetStream domain = `node`."""

    def __init__(self, workdir, hub, node):
        self.monitor_port = free_port()
        super().__init__(workdir, name=f"nats-{node}", extra=(
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'leafnodes {{ reconnect: 1, remotes: [ {{ url: "{hub.leafnode_url}" }} ] }}\n'
            f'jetstream {{ store_dir: "{workdir}/js-{node}", domain: {node} }}\n'))
        self.node = node
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"


def leaf_settings(leaf_server, interval="250ms"):
    """Config sections of a daemon on `leaf_server`: events in its domain, its uplink watched."""
    return {"nats": {"servers": [leaf_server.url], "reconnect": {"wait": "100ms", "jitter": "50ms"}},
            "events": {"stream": {"domain": leaf_server.node, "subjects": "this-node"}},
            "uplink": {"monitor_url": leaf_server.monitor_url, "interval": interval}}


def aggregate(client, hub, nodes, stream="CIM_FLEET_EVENTS"):
    """A stream on the hub sourcing every leaf's CIM_LEAF_EVENTS across domains,
    as README's "The hub side" describes; returns the API's answer."""
    import json
    config = {"name": stream, "storage": "file",
              "sources": [{"name": "CIM_LEAF_EVENTS", "external": {"api": f"$JS.{node}.API", "deliver": ""}}
                          for node in nodes]}
    reply = client.request(f"$JS.{hub.name}.API.STREAM.CREATE.{stream}", json.dumps(config).encode())
    answer = json.loads(reply.data)
    assert "error" not in answer, answer
    return answer
