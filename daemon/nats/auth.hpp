#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/load.hpp"

namespace cim::nats {

// The connection's secrets and certificates, resolved and read when the
// daemon starts or reloads, so a missing file is a configuration error then,
// not a surprise at the next reconnect. Never logged.
struct Auth {
    std::string credentials_file;  // resolved paths nats.c reads itself
    std::string user;
    std::string password;
    std::string token;
    std::string nkey_public;  // derived from the seed
    std::string nkey_seed_file;
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
    bool operator==(const Auth&) const = default;
};

struct AuthResult {
    std::optional<Auth> auth;  // set exactly when `errors` is empty
    // At the key: "config.yaml:4:3: nats.token_file: /run/t: cannot open: ..."
    std::vector<config::Diagnostic> errors;
};

// Relative secret paths are systemd credential names: they resolve against
// $CREDENTIALS_DIRECTORY (LoadCredential=). A secret nats.c would put into
// CONNECT unescaped, or a credentials file whose JWT is not one, is an error.
AuthResult resolve_auth(const config::NatsConfig& nats, const config::Origin& origin);

// The config file loaded and checked as a whole (also for a heartbeat no
// NATS server would take), and its secrets read when asked: what
// --check-config, start-up and every reload run, so all of them accept and
// refuse the same files. --check-config leaves the secrets alone: they may
// not exist where the config is checked (a Nix build), only where it runs.
struct Loaded {
    std::optional<config::Config> config;  // set when the file is valid, whatever its secrets
    std::optional<Auth> auth;  // set when the secrets were read and are valid too
    config::Origin origin;
    std::vector<config::Diagnostic> errors;  // every problem
};
enum class Secrets { leave, read };
Loaded load_settings(const std::string& path, Secrets secrets);
// The same with keys from the command line in place of the file's, and
// without a file when `path` is none (config::load).
Loaded load_settings(
    const std::optional<std::string>& path, const std::vector<config::Override>& overrides, Secrets secrets);

// The public key ("U...") of an NKey seed ("SU..."), or nullopt if `seed` is
// not a valid seed.
std::optional<std::string> nkey_public_from_seed(const std::string& seed);

}  // namespace cim::nats
