# The cim-leaf package: the daemon, its unit, its D-Bus policy and interface,
# and its sysusers.d entry, built with meson from this repository.
{ lib
, stdenv
, cmake
, meson
, ninja
, pkg-config
, libnats-c
, sdbus-cpp
, systemdLibs
, spdlog
, yaml-cpp
, nlohmann_json
, doctest
, openssl
}:

let
  root = ../.;

  # The version lives in one place: the project() call of meson.build.
  versionMatch = builtins.match
    ".*project\\([^)]*[^_]version[[:space:]]*:[[:space:]]*'([^']+)'.*"
    (builtins.readFile (root + "/meson.build"));
in
stdenv.mkDerivation {
  pname = "cim-leaf";
  version = if versionMatch == null then "unstable" else lib.head versionMatch;

  # Only what meson reads: editing the flake, the VM tests or the README does
  # not rebuild the daemon.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/meson.build")
      (lib.fileset.maybeMissing (root + "/meson_options.txt"))
      (root + "/daemon")
      (root + "/proto")
      (lib.fileset.maybeMissing (root + "/nixos-module/options.nix"))
      (lib.fileset.maybeMissing (root + "/tests"))
    ];
  };

  strictDeps = true;

  # cmake is here for finding doctest only: meson configures, whatever the
  # order of the setup hooks.
  dontUseCmakeConfigure = true;

  nativeBuildInputs = [
    meson
    ninja
    pkg-config
    # doctest 2.5 (nixpkgs 26.05) has a pkg-config file; 2.4 (25.11 and
    # before, which a flake may follow) only a CMake package, which meson
    # then finds through cmake.
    cmake
    # sdbus-c++-xml2cpp generates the D-Bus adaptor at build time.
    sdbus-cpp
  ];

  buildInputs = [
    libnats-c
    sdbus-cpp
    systemdLibs
    # Its headers only, and those of the fmt it propagates: both are compiled
    # into the daemon.
    spdlog
    yaml-cpp
    nlohmann_json
    doctest
    # libcrypto's Ed25519 derives an NKey seed's public key.
    openssl
  ];

  # The unit tests are part of the package check: a missing doctest must
  # fail the build, not leave `meson test` with nothing to run.
  mesonFlags = [ (lib.mesonEnable "tests" true) ];

  # Only the unit suite runs in the build sandbox: the integration and system
  # suites need a network, a D-Bus daemon and systemd.
  doCheck = true;
  mesonCheckFlags = [
    "--suite"
    "unit"
  ];

  # The files the NixOS module relies on are where it looks for them, and the
  # unit starts the binary of this very package.
  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck

    test -x "$out/bin/cim-leaf"
    test -f "$out/lib/systemd/system/cim-leaf.service"
    test -f "$out/share/dbus-1/system.d/org.cim.Leaf1.conf"
    test -f "$out/share/dbus-1/interfaces/org.cim.Leaf1.xml"
    test -f "$out/lib/sysusers.d/cim-leaf.conf"
    grep -q "^ExecStart=$out/bin/cim-leaf " "$out/lib/systemd/system/cim-leaf.service"
    "$out/bin/cim-leaf" --version
    "$out/bin/cim-leaf" --print-config-schema > /dev/null

    runHook postInstallCheck
  '';

  meta = {
    description = "Node agent of a CIM leaf: NATS heartbeats and health, systemd notify, D-Bus status";
    license = lib.licenses.mit;
    mainProgram = "cim-leaf";
    platforms = lib.platforms.linux;
  };
}
