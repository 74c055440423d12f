# services.cim-leaf: the hand-written glue around the GENERATED ./options.nix.
#
# The unit is the package's own (systemd.packages), so what the system tests
# check on Debian is what NixOS runs; this module only adds a drop-in, the
# config file, the user, the D-Bus policy and the checks below.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cim-leaf;

  settingsFormat = pkgs.formats.yaml { };

  # The typed options generated from the daemon's schema. Imported once more
  # here only to reuse the type of log.level for the logLevel shorthand.
  generatedOptions = (import ./options.nix { inherit lib; }).options;

  # null means "unset" to the daemon: such keys are left out of the file,
  # and so are the sections left empty by that (e.g. an unused nats.tls).
  prune = attrs:
    lib.filterAttrs (name: value: value != null && value != { })
      (lib.mapAttrs (name: value: if lib.isAttrs value then prune value else value) attrs);

  renderedSettings = prune cfg.settings;

  uncheckedConfigFile = settingsFormat.generate "cim-leaf.yaml" renderedSettings;

  # A bad setting fails the system build with the daemon's own message. The
  # check validates secret paths without opening them: secrets do not exist
  # at build time.
  checkedConfigFile = pkgs.runCommand "cim-leaf.yaml"
    {
      preferLocalBuild = true;
    }
    ''
      ${lib.getExe cfg.package} --check-config --config ${uncheckedConfigFile}
      cp ${uncheckedConfigFile} $out
    '';

  configFile = if cfg.checkConfig then checkedConfigFile else uncheckedConfigFile;

  storePrefix = "${builtins.storeDir}/";

  # Every string leaf of the settings whose key ends in _file, with its
  # dotted path: these are the secret and certificate paths of the schema.
  fileSettings =
    let
      walk = prefix: attrs:
        lib.concatLists (lib.mapAttrsToList
          (name: value:
            let
              path = if prefix == "" then name else "${prefix}.${name}";
            in
            if lib.isAttrs value then walk path value
            else if lib.isString value && lib.hasSuffix "_file" name then [{ inherit name path value; }]
            else [ ])
          attrs);
    in
    walk "" renderedSettings;

  # Public material (a CA, a client certificate) may live in the store;
  # secrets may not, since the store is world-readable.
  secretSettings = lib.filter (entry: !(lib.elem entry.name [ "ca_file" "cert_file" ])) fileSettings;

  # Relative paths are systemd credential names, resolved in
  # $CREDENTIALS_DIRECTORY; they must be declared in `credentials`.
  credentialReferences = lib.filter (entry: !(lib.hasPrefix "/" entry.value)) fileSettings;

  # A nats.tls file makes TLS required for nats:// URLs too.
  tlsRequired = lib.any (file: file != null) (lib.attrValues cfg.settings.nats.tls);

  plaintextRemoteServers = lib.optionals (!tlsRequired)
    ((import ./leaf-node.nix).plaintextRemoteUrls "nats" cfg.settings.nats.servers);
in
{
  imports = [ ./hub.nix ];

  options.services.cim-leaf = {
    enable = lib.mkEnableOption "cim-leaf, the node agent of a CIM leaf (NATS heartbeats and health, D-Bus status)";

    package = lib.mkPackageOption pkgs "cim-leaf" { };

    natsUrl = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "nats://hub.example:4222";
      description = ''
        Shorthand for a single NATS server: sets
        {option}`services.cim-leaf.settings.nats.servers` to `[ natsUrl ]`.
        A value given to `settings.nats.servers` itself takes precedence.
      '';
    };

    logLevel = lib.mkOption {
      type = lib.types.nullOr generatedOptions.log.level.type;
      default = null;
      example = "debug";
      description = ''
        Shorthand for {option}`services.cim-leaf.settings.log.level`.
        The level can be changed by a reload, without a restart.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule ./options.nix;
      default = { };
      example = lib.literalExpression ''
        {
          node.labels = { rack = "r1"; };
          nats.servers = [ "tls://nats-1.example:4222" "tls://nats-2.example:4222" ];
          nats.credentials_file = "nats.creds";
          heartbeat.interval = "2s";
        }
      '';
      description = ''
        The daemon's configuration, written to /etc/cim-leaf/config.yaml.
        Every key is a typed option generated from the daemon's own schema
        (`cim-leaf --print-config-schema`), so a typo or a wrong type fails
        at evaluation, and the rendered file is also checked by
        `cim-leaf --check-config` at build time. Options left at `null` are
        omitted from the file. Changing the settings reloads the service.

        Secrets never go here: the `*_file` keys take the name of a
        credential declared in {option}`services.cim-leaf.credentials`
        (or an absolute path outside the Nix store).
      '';
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.path;
      default = { };
      example = lib.literalExpression ''
        {
          "nats.creds" = "/run/secrets/cim-leaf/nats.creds";
          "nats-password" = "/run/keys/nats-password";
        }
      '';
      description = ''
        Secret files handed to the service with systemd's `LoadCredential=`,
        as credential name -> absolute path on this machine. The service
        reads them from `$CREDENTIALS_DIRECTORY`, so they may stay readable
        by root only. Refer to one from the settings by its bare name, e.g.
        `settings.nats.password_file = "nats-password";`. Paths inside the
        Nix store are rejected: the store is world-readable.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;
      defaultText = lib.literalExpression "pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform";
      description = ''
        Whether to check the rendered configuration with
        `cim-leaf --check-config` when the system is built (and, with
        {option}`services.cim-leaf.hub` and TLS files, the leaf node's
        nats-server configuration with `nats-server -t`). Turn it off only
        when the build machine cannot run the packages (cross-compilation).
      '';
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "cim-leaf";
      description = ''
        User the service runs as. The D-Bus policy shipped with the package
        lets only `cim-leaf` own `org.cim.Leaf1` on the system bus, so
        another user requires `settings.dbus.bus` other than `system`. The
        user is created only when it is `cim-leaf`.
      '';
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "cim-leaf";
      description = "Group the service runs as. The group is created only when it is `cim-leaf`.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.cim-leaf.settings = {
      nats.servers = lib.mkIf (cfg.natsUrl != null) (lib.mkDefault [ cfg.natsUrl ]);
      log.level = lib.mkIf (cfg.logLevel != null) (lib.mkDefault cfg.logLevel);
    };

    # An empty settings.nats.servers fails its generated type (a non-empty
    # list) already, with the option's name.
    assertions = [
      {
        assertion = cfg.user == "cim-leaf" || cfg.settings.dbus.bus != "system";
        message = ''
          services.cim-leaf.user is "${cfg.user}", but the package's D-Bus policy lets only
          the user cim-leaf own org.cim.Leaf1 on the system bus. Keep the default user, or set
          services.cim-leaf.settings.dbus.bus to "session" or "none".
        '';
      }
    ]
    ++ lib.mapAttrsToList
      (name: path: {
        assertion = !(lib.hasPrefix storePrefix (toString path));
        message = ''
          services.cim-leaf.credentials."${name}" is ${toString path}, inside the world-readable
          Nix store. Keep secrets out of the store (e.g. /run/keys, /run/secrets, /var/lib/secrets)
          and give their path as a string.
        '';
      })
      cfg.credentials
    ++ lib.mapAttrsToList
      (name: path: {
        assertion = builtins.match "[A-Za-z0-9_.@-]+" name != null;
        message = "services.cim-leaf.credentials.\"${name}\": a credential name may contain only letters, digits and _ . @ -";
      })
      cfg.credentials
    ++ map
      (entry: {
        assertion = !(lib.hasPrefix storePrefix entry.value);
        message = ''
          services.cim-leaf.settings.${entry.path} points into the world-readable Nix store
          (${entry.value}). Pass the secret with services.cim-leaf.credentials and refer to it
          by its credential name.
        '';
      })
      secretSettings
    ++ map
      (entry: {
        assertion = lib.hasAttr entry.value cfg.credentials;
        message = ''
          services.cim-leaf.settings.${entry.path} = "${entry.value}" names a credential, but
          services.cim-leaf.credentials has no "${entry.value}". Declare it there
          (services.cim-leaf.credentials."${entry.value}" = "/path/to/file";) or use an absolute path.
        '';
      })
      credentialReferences;

    warnings =
      map
        (url: ''
          services.cim-leaf: the NATS server ${url} is reached in plain text over the network
          (nats:// to a host that is not the loopback); heartbeats and any password cross it
          unencrypted. Use tls:// for remote servers.
        '')
        plaintextRemoteServers
      ++ lib.optional (cfg.natsUrl != null && cfg.settings.nats.servers != [ cfg.natsUrl ]) ''
        services.cim-leaf.natsUrl (${cfg.natsUrl}) is ignored because
        services.cim-leaf.settings.nats.servers is set; set only one of them.
      '';

    # The package's own unit, with a drop-in for what only NixOS knows. Its
    # StateDirectory=cim-leaf (/var/lib/cim-leaf, 0700: the spool of events
    # not yet acknowledged by the stream) is created by systemd for whatever
    # User= runs it, so no tmpfiles rule is needed here.
    systemd.packages = [ cfg.package ];

    systemd.services.cim-leaf = {
      wantedBy = [ "multi-user.target" ];
      after = lib.optional config.services.nats.enable "nats.service";
      wants = lib.optional config.services.nats.enable "nats.service";
      # A new config file is applied with a reload (SIGHUP), not a restart. A
      # new package or new credentials change the unit itself and restart it.
      reloadTriggers = [ configFile ];
      serviceConfig = lib.mkMerge [
        (lib.mkIf (cfg.credentials != { }) {
          LoadCredential = lib.mapAttrsToList (name: path: "${name}:${toString path}") cfg.credentials;
        })
        (lib.mkIf (cfg.user != "cim-leaf") { User = cfg.user; })
        (lib.mkIf (cfg.group != "cim-leaf") { Group = cfg.group; })
      ];
    };

    # The unit's ExecStart reads this path.
    environment.etc."cim-leaf/config.yaml".source = configFile;

    # `cim-leaf status` for operators.
    environment.systemPackages = [ cfg.package ];

    # A static user: DynamicUser= cannot own a name on the system bus.
    users.users = lib.mkIf (cfg.user == "cim-leaf") {
      cim-leaf = {
        isSystemUser = true;
        group = cfg.group;
        description = "CIM leaf agent";
      };
    };

    users.groups = lib.mkIf (cfg.group == "cim-leaf") {
      cim-leaf = { };
    };

    # share/dbus-1/system.d/org.cim.Leaf1.conf
    services.dbus.packages = [ cfg.package ];
  };
}
