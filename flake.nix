{
  description = "cim-leaf: the node agent of a CIM leaf (NATS heartbeats and health, systemd notify, D-Bus status)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  };

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;

      systems = [ "x86_64-linux" "aarch64-linux" ];

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The NixOS module with its package defaulting to this flake's build
      # against the system's own nixpkgs (the same libsystemd as the running
      # systemd, and no second nixpkgs to evaluate). The plain module,
      # ./nixos-module, takes pkgs.cim-leaf from the overlay instead.
      nixosModule = { lib, pkgs, ... }: {
        # Imported under both names (default, cim-leaf), it counts once.
        key = "cim-leaf#nixosModule";
        _file = ./flake.nix;
        imports = [ ./nixos-module ];
        services.cim-leaf.package = lib.mkDefault (pkgs.callPackage ./nixos-module/package.nix { });
      };
    in
    {
      packages = forAllSystems (pkgs:
        let
          cim-leaf = pkgs.callPackage ./nixos-module/package.nix { };
        in
        {
          default = cim-leaf;
          inherit cim-leaf;
        });

      overlays.default = final: prev: {
        cim-leaf = final.callPackage ./nixos-module/package.nix { };
      };

      nixosModules = {
        default = nixosModule;
        cim-leaf = nixosModule;
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # The compiler (stdenv), meson, ninja, pkg-config, sdbus-c++-xml2cpp
          # and every library: libnats-c, sdbus-cpp, systemd, spdlog,
          # yaml-cpp, nlohmann_json, doctest.
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.cim-leaf ];
          packages = [
            pkgs.clang-tools
            pkgs.dbus
            pkgs.nats-server
            pkgs.natscli
            pkgs.nixpkgs-fmt
            (pkgs.python3.withPackages (ps: [ ps.pytest ]))
          ];
        };
      });

      # `nix flake check`: the package with its unit tests, and every VM test.
      checks = forAllSystems (pkgs:
        {
          cim-leaf = self.packages.${pkgs.stdenv.hostPlatform.system}.cim-leaf;
        }
        // import ./vm-tests {
          inherit pkgs;
          cimLeafModule = self.nixosModules.default;
        });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
