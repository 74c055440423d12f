# What services.cim-leaf.hub renders and checks, as plain functions of
# builtins only (no lib, no pkgs), so that tests/nix can evaluate them and run
# the real nats-server on the result on a machine without nixpkgs.
let
  # A port 1-65535 and a host name or [IPv6], as the daemon's schema spells them.
  portPattern = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
  hostPattern = "([A-Za-z0-9._~-]+|\\[[0-9A-Fa-f:.]+])";

  nonNull = attrs: builtins.removeAttrs attrs (builtins.filter (name: attrs.${name} == null) (builtins.attrNames attrs));

  hasPrefix = prefix: text: builtins.substring 0 (builtins.stringLength prefix) text == prefix;
in
rec {
  # The hub's leafnode listeners. No user:password@, which would end up in
  # the world-readable store; nats-server's default leafnode port is 7422.
  hubUrlPattern = "(nats-leaf|tls)://${hostPattern}(:${portPattern})?";

  # { scheme, host } of scheme://host[:port][/], or null.
  urlParts = url:
    let
      match = builtins.match "([a-z-]+)://(\\[[^]]*]|[^:/@]+)(:[0-9]+)?/?" url;
    in
    if match == null then null else {
      scheme = builtins.elemAt match 0;
      host = builtins.elemAt match 1;
    };

  isLoopback = host:
    host == "localhost" || host == "[::1]" || hasPrefix "127." host;

  isLoopbackUrl = url:
    let
      parts = urlParts url;
    in
    parts != null && isLoopback parts.host;

  # Plain-text URLs of `scheme` to hosts other than the loopback.
  plaintextRemoteUrls = scheme: urls:
    builtins.filter
      (url:
        let
          parts = urlParts url;
        in
        parts != null && parts.scheme == scheme && !isLoopback parts.host)
      urls;

  # nats-server takes one tls block for all URLs of a remote.
  mixesSchemes = urls:
    builtins.length (builtins.filter (url: hasPrefix "tls://" url) urls) != 0
    && builtins.length (builtins.filter (url: hasPrefix "nats-leaf://" url) urls) != 0;

  # Credential name -> path on the host of every file of `hub` that
  # nats-server reads; the module hands them over with LoadCredential=.
  credentialFiles = hub:
    nonNull {
      "hub.creds" = hub.credentials;
      "hub-ca.pem" = hub.tls.caFile;
      "hub-cert.pem" = hub.tls.certFile;
      "hub-key.pem" = hub.tls.keyFile;
    };

  # The leaf node's remote, its files read from `credentialsDir` (systemd's
  # $CREDENTIALS_DIRECTORY of nats.service). A tls block whenever a URL is
  # tls:// or a TLS file is given: without one, nats-server speaks plain text
  # to a tls:// hub that does not ask for TLS.
  remote = { hub, credentialsDir }:
    let
      files = credentialFiles hub;
      path = name: if files ? ${name} then "${credentialsDir}/${name}" else null;
      tls = nonNull {
        ca_file = path "hub-ca.pem";
        cert_file = path "hub-cert.pem";
        key_file = path "hub-key.pem";
      };
      tlsRequired = tls != { } || builtins.any (url: hasPrefix "tls://" url) hub.urls;
    in
    { urls = hub.urls; }
    // nonNull { credentials = path "hub.creds"; }
    // (if tlsRequired then { inherit tls; } else { });

  # What the module adds to services.nats.settings (besides the listener's
  # host, a default): the monitoring endpoint on the loopback, JetStream in
  # the node's own domain, and the uplink to the hub.
  natsSettings = { nodeId, hub, credentialsDir }: {
    http = "127.0.0.1:${toString hub.monitorPort}";
    jetstream.domain = nodeId;
    leafnodes.remotes = [ (remote { inherit hub credentialsDir; }) ];
  };

  # What the module sets, as defaults, in services.cim-leaf.settings: the
  # daemon on the leaf node, its events in the leaf's stream, the uplink
  # watched. A stream's subjects are interest that leaf node connections
  # carry: a leaf's stream taking every node's events would also store those
  # of the other leaves, which reach it through the hub. So: this node's only.
  daemonSettings = { nodeId, hub, port }: {
    nats.servers = [ "nats://127.0.0.1:${toString port}" ];
    events.stream = {
      domain = nodeId;
      subjects = "this-node";
    };
    uplink.monitor_url = "http://127.0.0.1:${toString hub.monitorPort}";
  };

  # Units the module adds to settings.watch.units, beside the user's own:
  # the leaf node the daemon runs on, as nixpkgs' services.nats names it.
  watchedUnits = [ "nats.service" ];

  # `settings` without the TLS files under credentialsDir, which exist only
  # at run time but which `nats-server -t` reads (it does not read a
  # remote's credentials file): what the build can check.
  withoutRuntimeTlsFiles = { settings, credentialsDir }:
    let
      strip = tls:
        builtins.removeAttrs tls
          (builtins.filter (key: builtins.isString tls.${key} && hasPrefix "${credentialsDir}/" tls.${key})
            (builtins.attrNames tls));
      stripRemote = remote: if remote ? tls then remote // { tls = strip remote.tls; } else remote;
    in
    if settings ? leafnodes.remotes then
      settings // { leafnodes = settings.leafnodes // { remotes = map stripRemote settings.leafnodes.remotes; }; }
    else settings;
}
