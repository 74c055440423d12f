# A hub running nats-server with JetStream and two leaves reaching it over
# the test network: the fan-out health request gets an answer from each leaf;
# with the hub down both leaves say `reconnecting` on D-Bus, with it back both
# are `connected` and heartbeats resume; events made while the hub is down
# (also across a leaf's restart) wait in the leaves' spools and are in the
# hub's stream afterwards, each once, in seq order.
{ pkgs, cimLeafModule }:

let
  leaf = { pkgs, ... }: {
    imports = [ cimLeafModule ];

    services.cim-leaf = {
      enable = true;
      natsUrl = "nats://hub:4222";
      settings = {
        heartbeat.interval = "1s";
        nats.reconnect = {
          wait = "500ms";
          jitter = "250ms";
        };
      };
    };

    environment.systemPackages = [ pkgs.natscli ];
  };
in
pkgs.testers.runNixOSTest {
  name = "cim-leaf-fleet";

  nodes = {
    hub = { lib, pkgs, ... }: {
      services.nats = {
        enable = true;
        # The leaves' events go to its stream (CIM_LEAF_EVENTS, created by
        # the first leaf), stored under the module's dataDir, so it outlives
        # a stop of nats.service.
        jetstream = true;
        # Listen on the test network, not only on the loopback (forced
        # because some versions of the nats module set a loopback host).
        settings.host = lib.mkForce "0.0.0.0";
      };

      networking.firewall.allowedTCPPorts = [ 4222 ];

      environment.systemPackages = [ pkgs.natscli ];
    };

    leaf1 = leaf;
    leaf2 = leaf;
  };

  testScript =
    builtins.readFile ./scenarios/lib.py
    + builtins.readFile ./scenarios/fleet.py
    + "\n"
    + ''
      run_fleet(hub, [leaf1, leaf2], nats_unit="nats.service")
    '';
}
