# The CIM leaf topology: a hub running nats-server with a TLS leafnode port
# and JetStream in domain `hub`, and two leaves configured only through
# services.cim-leaf.hub (each runs its own nats-server as a leaf node of the
# hub, with cim-leaf on it). The fan-out health request on the hub reaches
# both leaves; with the hub down each leaf stays connected to its own leaf
# node, says its uplink is down and keeps acknowledging events (also across a
# restart); with the hub back, a hub stream sourcing both leaves' streams
# holds every event once, in seq order; `cim-leaf fleet` on the hub lists both,
# and, once a watched unit on a leaf is killed, shows that leaf degraded with
# the unit named, after its unit_failed event reached the hub.
{ pkgs, cimLeafModule }:

let
  # Test-only TLS material (keys in the store are fine here): a CA, and the
  # hub's certificate for its host name on the test network.
  hubTls = pkgs.runCommand "cim-leaf-fleet-test-tls"
    {
      nativeBuildInputs = [ pkgs.openssl ];
    }
    ''
      mkdir $out
      cd $out
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=cim-leaf fleet test CA" -keyout ca.key -out ca.pem
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=hub" \
        -keyout hub.key -out hub.csr
      echo "subjectAltName=DNS:hub" > hub.ext
      openssl x509 -req -in hub.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile hub.ext -out hub.pem
    '';

  leaf = nodeId: { pkgs, ... }: {
    imports = [ cimLeafModule ];

    services.cim-leaf = {
      enable = true;
      hub = {
        urls = [ "tls://hub:7422" ];
        tls.caFile = "${hubTls}/ca.pem";
      };
      settings = {
        node.id = nodeId;
        heartbeat.interval = "1s";
        uplink.interval = "1s";
        # Beside nats.service, which the hub option adds.
        watch.units = [ "cim-demo.service" ];
      };
    };

    # scenarios/fleet.py: FLEET_WATCHED_UNIT, started by the scenario.
    systemd.services.cim-demo = {
      description = "cim-leaf test unit";
      serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
    };

    environment.systemPackages = [ pkgs.natscli ];
  };
in
pkgs.testers.runNixOSTest {
  name = "cim-leaf-fleet";

  nodes = {
    hub = { config, pkgs, ... }: {
      # Only for its package: `cim-leaf fleet` runs on the hub.
      imports = [ cimLeafModule ];

      services.nats = {
        enable = true;
        serverName = "hub";
        # The aggregate stream (CIM_FLEET_EVENTS, created by the test), stored
        # under the module's dataDir, so it outlives a stop of nats.service.
        jetstream = true;
        settings = {
          host = "127.0.0.1";
          jetstream.domain = "hub";
          leafnodes = {
            listen = "0.0.0.0:7422";
            tls = {
              cert_file = "${hubTls}/hub.pem";
              key_file = "${hubTls}/hub.key";
            };
          };
          # A stop is the hub's outage here; nixpkgs stops nats-server in
          # lame-duck mode (KillSignal=SIGUSR2): 10 s of grace by default
          # before it closes anything, clients spread over 2 minutes (30 s is
          # the least nats-server takes).
          lame_duck_grace_period = "1s";
          lame_duck_duration = "30s";
        };
      };

      networking.firewall.allowedTCPPorts = [ 7422 ];

      environment.systemPackages = [ pkgs.natscli config.services.cim-leaf.package ];
    };

    leaf1 = leaf "leaf1";
    leaf2 = leaf "leaf2";
  };

  testScript =
    builtins.readFile ./scenarios/lib.py
    + builtins.readFile ./scenarios/fleet.py
    + "\n"
    + ''
      run_fleet(hub, [leaf1, leaf2], nats_unit="nats.service")
    '';
}
