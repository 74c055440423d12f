#include "nats/options.hpp"

#include <algorithm>
#include <vector>

namespace cim::nats {

namespace {

constexpr int connect_timeout_ms = 2000;

bool tls_wanted(const config::NatsConfig& nats)
{
    return std::any_of(nats.servers.begin(), nats.servers.end(),
               [](const std::string& url) { return url.starts_with("tls://"); }) ||
        !nats.tls.ca_file.empty() || !nats.tls.cert_file.empty() || !nats.tls.key_file.empty();
}

}  // namespace

natsStatus set_connection_options(natsOptions* options, const config::NatsConfig& nats, const Auth& auth)
{
    std::vector<const char*> servers;
    for (const auto& server : nats.servers)
        servers.push_back(server.c_str());
    natsStatus s = natsOptions_SetServers(options, servers.data(), static_cast<int>(servers.size()));
    if (s == NATS_OK)
        s = natsOptions_SetName(options, nats.name.c_str());
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(options, connect_timeout_ms);
    if (s == NATS_OK && tls_wanted(nats))
        s = natsOptions_SetSecure(options, true);
    if (s == NATS_OK && !auth.credentials_file.empty())
        s = natsOptions_SetUserCredentialsFromFiles(options, auth.credentials_file.c_str(), nullptr);
    if (s == NATS_OK && !auth.user.empty())
        s = natsOptions_SetUserInfo(options, auth.user.c_str(), auth.password.c_str());
    if (s == NATS_OK && !auth.token.empty())
        s = natsOptions_SetToken(options, auth.token.c_str());
    if (s == NATS_OK && !auth.nkey_public.empty())
        s = natsOptions_SetNKeyFromSeed(options, auth.nkey_public.c_str(), auth.nkey_seed_file.c_str());
    if (s == NATS_OK && !auth.ca_file.empty())
        s = natsOptions_LoadCATrustedCertificates(options, auth.ca_file.c_str());
    if (s == NATS_OK && !auth.cert_file.empty())
        s = natsOptions_LoadCertificatesChain(options, auth.cert_file.c_str(), auth.key_file.c_str());
    return s;
}

std::string status_text(natsStatus status)
{
    return natsStatus_GetText(status);
}

std::string last_error()
{
    natsStatus code = NATS_OK;
    const char* text = nats_GetLastError(&code);
    return text ? text : "";
}

std::string connect_failure(natsStatus status)
{
    if (status == NATS_NO_SERVER)
        return "cannot connect to NATS: no server reachable";
    if (status == NATS_SECURE_CONNECTION_WANTED)
        return "cannot connect to NATS: the server does not offer TLS, which tls:// and nats.tls require; "
               "not falling back to plain text";
    std::string text = last_error();
    // "(conn.c:1905): Authorization Violation": the source location is noise.
    if (const auto end = text.find("): "); text.rfind('(', 0) == 0 && end != std::string::npos)
        text.erase(0, end + 3);
    if (text.empty())
        text = status_text(status);
    if (status == NATS_CONNECTION_AUTH_FAILED || status == NATS_NOT_PERMITTED)
        return "NATS refused the credentials: " + text;
    return "cannot connect to NATS: " + text;
}

}  // namespace cim::nats
