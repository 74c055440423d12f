# services.cim-leaf.hub: the host's own nats-server as a NATS leaf node of
# the hub cluster, with JetStream in the node's own domain, and the daemon on
# it, watching the uplink (README: "On NixOS", and the uplink section).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cim-leaf;

  hub = cfg.hub;

  nodeId = cfg.settings.node.id;

  leafNode = import ./leaf-node.nix;

  # $CREDENTIALS_DIRECTORY of nats.service. nats-server expands variables in
  # a remote's credentials path but not in TLS file paths, so the fixed path
  # serves both.
  credentialsDir = "/run/credentials/nats.service";

  credentialFiles = leafNode.credentialFiles hub;

  tlsFiles = lib.filterAttrs (name: path: lib.hasSuffix ".pem" name) credentialFiles;

  # A public file given as a Nix path goes into the store, and so into the
  # system's closure; a secret never does.
  credentialSource = name: path:
    if builtins.isPath path && lib.elem name [ "hub-ca.pem" "hub-cert.pem" ] then "${path}" else toString path;

  storePrefix = "${builtins.storeDir}/";

  # nixpkgs' services.nats.validateConfig runs `nats-server -t` in the build
  # sandbox, which reads every TLS file, and these exist only at run time. So
  # with TLS files that check is off, and this one runs instead: the same
  # rendered settings, without those files.
  checkableNatsConfig = (pkgs.formats.json { }).generate "nats.conf" (leafNode.withoutRuntimeTlsFiles {
    settings = config.services.nats.settings;
    inherit credentialsDir;
  });

  checkedNatsConfig = pkgs.runCommand "nats-leaf-node-check"
    {
      nativeBuildInputs = [ pkgs.nats-server ];
      preferLocalBuild = true;
    }
    ''
      nats-server --config ${checkableNatsConfig} -t
      touch $out
    '';

  secretPathAssertion = option: path: {
    assertion = path == null || !(lib.hasPrefix storePrefix (toString path));
    message = ''
      services.cim-leaf.hub.${option} is ${toString path}, inside the world-readable Nix store.
      Keep secrets out of the store (e.g. /run/keys, /run/secrets, /var/lib/secrets) and give
      their path as a string.
    '';
  };
in
{
  options.services.cim-leaf.hub = lib.mkOption {
    type = lib.types.nullOr (lib.types.submodule {
      options = {
        urls = lib.mkOption {
          type = lib.types.nonEmptyListOf (lib.types.strMatching leafNode.hubUrlPattern);
          example = [ "tls://hub-1.example:7422" "tls://hub-2.example:7422" ];
          description = ''
            The hub cluster's leafnode listeners (nats-server's `leafnodes`
            port, 7422 by default), as `tls://` or `nats-leaf://` (plain
            text) URLs, not mixed; several are one hub cluster, tried in
            random order. A `tls://` URL makes TLS mandatory.
          '';
        };

        credentials = lib.mkOption {
          type = lib.types.nullOr lib.types.path;
          default = null;
          example = "/run/secrets/cim-leaf/hub.creds";
          description = ''
            The NATS credentials file (user JWT and NKey seed) the leaf node
            authenticates with at the hub, as an absolute path on this
            machine outside the Nix store. nats.service gets it with
            systemd's `LoadCredential=`, so it may stay readable by root only.
            Unset: the hub's leafnode port takes the leaf without credentials.
          '';
        };

        tls = {
          caFile = lib.mkOption {
            type = lib.types.nullOr lib.types.path;
            default = null;
            example = "/etc/ssl/cim/ca.pem";
            description = ''
              The CA that signed the hub's certificate (a Nix path is copied
              into the store). Unset: the system's trusted CAs.
            '';
          };

          certFile = lib.mkOption {
            type = lib.types.nullOr lib.types.path;
            default = null;
            example = "/var/lib/acme/leaf-01.example/cert.pem";
            description = ''
              A client certificate, for a hub that asks for one (a Nix path is
              copied into the store); with {option}`keyFile`.
            '';
          };

          keyFile = lib.mkOption {
            type = lib.types.nullOr lib.types.path;
            default = null;
            example = "/var/lib/acme/leaf-01.example/key.pem";
            description = ''
              The client certificate's private key, outside the Nix store.
              Like every TLS file here it reaches nats.service through
              `LoadCredential=`, so it may stay readable by root only.
            '';
          };
        };

        monitorPort = lib.mkOption {
          type = lib.types.port;
          default = 8222;
          description = ''
            Port of the leaf node's monitoring endpoint, on the loopback
            only; the daemon watches the uplink through its `/leafz`.
          '';
        };
      };
    });
    default = null;
    example = lib.literalExpression ''
      {
        urls = [ "tls://hub-1.example:7422" "tls://hub-2.example:7422" ];
        credentials = "/run/secrets/cim-leaf/hub.creds";
        tls.caFile = ./cim-ca.pem;
      }
    '';
    description = ''
      Make this host a CIM leaf: its own nats-server ({option}`services.nats`)
      runs as a NATS leaf node of the hub cluster, with JetStream in its own
      domain and server name, both the node id (so
      {option}`services.cim-leaf.settings.node.id` must be set, unique in
      the fleet and not the hub's own JetStream domain), and its
      monitoring endpoint on the loopback. The daemon connects to that
      server (`settings.nats.servers`), keeps its own events in the leaf's
      stream (`settings.events.stream.domain`, and `subjects = "this-node"`)
      and watches the uplink (`settings.uplink.monitor_url`) and the leaf
      node's unit (`nats.service` is added to `settings.watch.units`, beside
      the units given there). The leaf node's client port listens
      on the loopback only ({option}`services.nats.settings.host`): it takes
      clients without authentication and acts with the hub credentials'
      rights. Unset: the daemon connects straight to
      `settings.nats.servers`.
    '';
  };

  config = lib.mkIf (cfg.enable && hub != null) {
    assertions = [
      {
        assertion = nodeId != null;
        message = ''
          services.cim-leaf.hub needs services.cim-leaf.settings.node.id: it is the leaf's
          JetStream domain and nats-server name, which must be unique in the fleet.
        '';
      }
      {
        assertion = lib.all leafNode.isLoopbackUrl cfg.settings.nats.servers;
        message = ''
          services.cim-leaf.hub runs the daemon on this host's own leaf node, but
          services.cim-leaf.settings.nats.servers (${lib.concatStringsSep ", " cfg.settings.nats.servers})
          is not on the loopback. Leave it (and natsUrl) unset: the module sets
          nats://127.0.0.1:${toString config.services.nats.port}.
        '';
      }
      {
        assertion = !(leafNode.mixesSchemes hub.urls);
        message = ''
          services.cim-leaf.hub.urls mixes tls:// and nats-leaf:// (${lib.concatStringsSep ", " hub.urls});
          nats-server has one TLS setting for all of them. Use tls:// for all.
        '';
      }
      {
        assertion = (hub.tls.certFile == null) == (hub.tls.keyFile == null);
        message = "services.cim-leaf.hub.tls: certFile and keyFile go together; set both or neither.";
      }
      (secretPathAssertion "credentials" hub.credentials)
      (secretPathAssertion "tls.keyFile" hub.tls.keyFile)
    ];

    warnings = map
      (url: ''
        services.cim-leaf.hub: the hub ${url} is reached in plain text over the network
        (nats-leaf:// to a host that is not the loopback, no TLS file); the leaf's
        traffic and credentials cross it unencrypted. Use tls:// for a remote hub.
      '')
      (lib.optionals (tlsFiles == { }) (leafNode.plaintextRemoteUrls "nats-leaf" hub.urls));

    services.cim-leaf.settings =
      let
        defaults = leafNode.daemonSettings {
          inherit nodeId hub;
          port = config.services.nats.port;
        };
      in
      lib.mkMerge [
        (lib.mapAttrsRecursive (path: lib.mkDefault) (builtins.removeAttrs defaults [ "nats" ]))
        { nats.servers = lib.mkIf (cfg.natsUrl == null) (lib.mkDefault defaults.nats.servers); }
        # No default: a list definition, concatenated with the user's units
        # (lib.mkForce on settings.watch.units leaves it out).
        { watch.units = leafNode.watchedUnits; }
      ];

    services.nats = {
      enable = true;
      jetstream = true;
      serverName = lib.mkIf (nodeId != null) nodeId;
      settings = lib.mkMerge [
        { host = lib.mkDefault "127.0.0.1"; }
        (lib.mkIf (nodeId != null) (leafNode.natsSettings { inherit nodeId hub credentialsDir; }))
      ];
      validateConfig = lib.mkIf (tlsFiles != { }) (lib.mkDefault false);
    };

    systemd.services.nats.serviceConfig.LoadCredential = lib.mkIf (credentialFiles != { })
      (lib.mapAttrsToList (name: path: "${name}:${credentialSource name path}") credentialFiles);

    system.checks = lib.optional (cfg.checkConfig && tlsFiles != { }) checkedNatsConfig;
  };
}
