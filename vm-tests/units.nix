# Watched systemd units on one machine: demo services killed, restarted by
# hand and by systemd, a critical one, a unit matching a glob made later, and
# the watch across `systemctl daemon-reexec` and a restart of the system bus
# (scenarios/units.py, which the Debian system test runs too).
{ pkgs, cimLeafModule }:

let
  # sleep infinity until killed; the scenario starts each one itself.
  demoService = extraServiceConfig: {
    description = "cim-leaf test unit";
    serviceConfig = {
      ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
    } // extraServiceConfig;
  };
in
pkgs.testers.runNixOSTest {
  name = "cim-leaf-units";

  nodes.machine = { pkgs, ... }: {
    imports = [ cimLeafModule ];

    services.nats = {
      enable = true;
      jetstream = false;
    };

    # scenarios/units.py: DEMO_UNITS, WATCHED_UNITS and CRITICAL_UNITS.
    systemd.services = {
      cim-demo-a = demoService { };
      cim-demo-critical = demoService { };
      cim-demo-restarting = demoService {
        Restart = "on-failure";
        RestartSec = "2s";
      };
    };

    services.cim-leaf = {
      enable = true;
      settings = {
        heartbeat.interval = "1s";
        watch = {
          units = [ "cim-demo-a.service" "cim-demo-critical.service" "cim-demo-restarting.service" "cim-glob-*.service" ];
          critical = [ "cim-demo-critical.service" ];
        };
      };
    };

    environment.systemPackages = [ pkgs.natscli ];
  };

  testScript =
    builtins.readFile ./scenarios/lib.py
    + builtins.readFile ./scenarios/units.py
    + "\n"
    + ''
      run_units(machine, nats_unit="nats.service")
    '';
}
