# Reload, watchdog and policy on one machine: a changed config applied by
# `systemctl reload` (here: switching to a specialisation, whose new
# /etc/cim-leaf/config.yaml reloads the unit through reloadTriggers), the
# watchdog restarting a stopped main process, and an unprivileged Reload()
# over D-Bus denied.
{ pkgs, cimLeafModule }:

pkgs.testers.runNixOSTest {
  name = "cim-leaf-lifecycle";

  nodes.machine = { pkgs, ... }: {
    imports = [ cimLeafModule ];

    services.nats = {
      enable = true;
      jetstream = false;
    };

    # Heartbeats at the default interval (5s) until the switch.
    services.cim-leaf.enable = true;

    # An ordinary user, for the D-Bus policy checks.
    users.users.alice = {
      isNormalUser = true;
    };

    environment.systemPackages = [ pkgs.natscli ];

    specialisation.newinterval.configuration = {
      services.cim-leaf.settings.heartbeat.interval = "1s";
    };
  };

  # A bad config cannot be switched to: the build-time --check-config already
  # rejects it, so the scenario skips its bad-reload step here.
  testScript = { nodes, ... }:
    let
      switchToNewInterval = "${nodes.machine.system.build.toplevel}/specialisation/newinterval/bin/switch-to-configuration test";
    in
    builtins.readFile ./scenarios/lib.py
    + builtins.readFile ./scenarios/lifecycle.py
    + "\n"
    + ''
      run_lifecycle(machine, nats_unit="nats.service", apply_config=lambda *_args, **_kwargs: machine.succeed("${switchToNewInterval}"), can_write_bad_config=False)
    '';
}
