# One machine with a local nats-server and cim-leaf: the unit is active only
# after READY, its status, journal and D-Bus state, a heartbeat on NATS, the
# health request and the NATS service protocol.
{ pkgs, cimLeafModule }:

pkgs.testers.runNixOSTest {
  name = "cim-leaf-single";

  nodes.machine = { pkgs, ... }: {
    imports = [ cimLeafModule ];

    services.nats = {
      enable = true;
      jetstream = false;
    };

    services.cim-leaf = {
      enable = true;
      settings = {
        node.labels = {
          role = "vm-test";
        };
        heartbeat.interval = "1s";
      };
    };

    environment.systemPackages = [ pkgs.natscli ];
  };

  testScript =
    builtins.readFile ./scenarios/lib.py
    + builtins.readFile ./scenarios/single.py
    + "\n"
    + ''
      run_single(machine, nats_unit="nats.service")
    '';
}
