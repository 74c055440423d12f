# The NixOS VM tests, as the flake's checks (`nix flake check`). Their logic
# is the Python in ./scenarios, which the Debian system tests (tests/system)
# also run against real systemd in a container: one script, two drivers.
{ pkgs, cimLeafModule }:

let
  callTest = file: import file { inherit pkgs cimLeafModule; };
in
{
  vm-single = callTest ./single.nix;
  vm-fleet = callTest ./fleet.nix;
  vm-lifecycle = callTest ./lifecycle.nix;
  vm-units = callTest ./units.nix;
}
