#include "nats/auth.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "nats/payloads.hpp"
#include "util/file.hpp"
#include "util/text.hpp"

namespace cim::nats {

namespace {

constexpr std::size_t max_secret_bytes = 64 * 1024;
constexpr const char* base32_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// CRC-16/XMODEM, the checksum NKeys append before base32 encoding.
std::uint16_t crc16(const std::uint8_t* data, std::size_t size)
{
    std::uint16_t crc = 0;
    for (std::size_t i = 0; i < size; ++i) {
        crc ^= static_cast<std::uint16_t>(data[i] << 8);
        for (int bit = 0; bit < 8; ++bit)
            crc = static_cast<std::uint16_t>(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

std::optional<std::vector<std::uint8_t>> base32_decode(const std::string& text)
{
    std::vector<std::uint8_t> out;
    std::uint32_t buffer = 0;
    int bits = 0;
    for (char c : text) {
        const char* pos = std::strchr(base32_alphabet, c);
        if (c == '\0' || pos == nullptr)
            return std::nullopt;
        buffer = (buffer << 5) | static_cast<std::uint32_t>(pos - base32_alphabet);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>(buffer >> bits));
        }
    }
    return out;
}

std::string base32_encode(const std::vector<std::uint8_t>& data)
{
    std::string out;
    std::uint32_t buffer = 0;
    int bits = 0;
    for (std::uint8_t byte : data) {
        buffer = (buffer << 8) | byte;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out += base32_alphabet[(buffer >> bits) & 0x1f];
        }
    }
    if (bits > 0)
        out += base32_alphabet[(buffer << (5 - bits)) & 0x1f];
    return out;
}

std::optional<std::string> env(const char* name)
{
    const char* value = std::getenv(name);
    return value && *value ? std::optional<std::string>(value) : std::nullopt;
}

// Why nats.c 3.4.1 cannot send `secret` in CONNECT, whose JSON it writes
// without escaping the password or the token, or nullopt. Says what, never
// where: the text is a secret.
std::optional<std::string> unsendable(std::string_view secret)
{
    for (std::size_t i = 0; i < secret.size();) {
        const unsigned char c = static_cast<unsigned char>(secret[i]);
        if (c == '"' || c == '\\')
            return std::string("a '") + static_cast<char>(c) + "'";
        if (c < 0x20 || c == 0x7f)
            return "a control character";
        const std::size_t length = util::utf8_sequence_length(secret.substr(i));
        if (length == 0)
            return "invalid UTF-8";
        i += length;
    }
    return std::nullopt;
}

// The user JWT nats.c 3.4.1 sends from a credentials file, found as it finds
// it (nats_GetJWTOrSeed, item 0): in the file as a C string, the line after a
// header line when the next non-empty line is a header too; without one, the
// whole file. Lines end at '\n' only.
std::string user_jwt(std::string_view file)
{
    file = file.substr(0, file.find('\0'));
    std::vector<std::string_view> lines;  // non-empty, as strtok splits
    for (std::size_t start = 0; start < file.size();) {
        const std::size_t end = std::min(file.find('\n', start), file.size());
        if (end > start)
            lines.push_back(file.substr(start, end - start));
        start = end + 1;
    }
    // "---" at the end, and "---" again before those.
    auto header = [](std::string_view line) {
        return line.size() >= 6 && line.ends_with("---") &&
            line.substr(0, line.size() - 3).find("---") != std::string_view::npos;
    };
    for (std::size_t i = 0; i + 2 < lines.size(); ++i)
        if (header(lines[i])) {
            if (header(lines[i + 2]))
                return std::string(lines[i + 1]);
            i += 2;  // nats.c goes on after the lines it looked at
        }
    return std::string(file);
}

// What a JWT is: three base64url parts joined by dots (header, claims,
// signature). nats.c escapes the JWT only partly ('"' not at all), and a
// seed in the JWT's place would be sent as it: nothing else may pass.
bool is_jwt(std::string_view text)
{
    auto base64url = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    };
    int parts = 0;
    for (std::size_t start = 0; start <= text.size(); ++parts) {
        const std::size_t end = std::min(text.find('.', start), text.size());
        const std::string_view part = text.substr(start, end - start);
        if (part.empty() || !std::all_of(part.begin(), part.end(), base64url))
            return false;
        start = end + 1;
    }
    return parts == 3;
}

// A secret file as the config names it.
struct SecretFile {
    std::string path;  // resolved; empty when unused or unresolvable
    // How errors name it: an absolute path as written (quoted when it holds
    // more than a path usually does), a credential name not at all, since an
    // operator may have written the secret itself there.
    std::string shown;
};

class Resolver {
public:
    explicit Resolver(const config::Origin& origin) : origin_(origin) { }

    std::vector<config::Diagnostic> errors;

    void error(const std::string& key, std::string message)
    {
        errors.push_back(config::diagnostic_at(origin_, key, std::move(message)));
    }

    // An absolute path stays; a credential name resolves in $CREDENTIALS_DIRECTORY.
    SecretFile locate(const std::string& key, const std::string& written)
    {
        if (written.empty() || written.front() == '/')
            return {written, util::quote_unless_plain(written, "/._-+")};
        const auto directory = env("CREDENTIALS_DIRECTORY");
        if (!directory) {
            error(key,
                "is a credential name, but $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit, or "
                "an absolute path)");
            return {};
        }
        return {*directory + "/" + written, "its credential in $CREDENTIALS_DIRECTORY"};
    }

    // Resolves and checks that the file can be read, without keeping it.
    std::string readable(const std::string& key, const std::string& written)
    {
        const SecretFile file = locate(key, written);
        if (!file.path.empty())
            contents(key, file);
        return file.path;
    }

    // The whole file, or nullopt after an error.
    std::optional<std::string> contents(const std::string& key, const SecretFile& file)
    {
        auto whole = util::read_regular_file(file.path, max_secret_bytes);
        if (!whole.text)
            error(key, file.shown + ": " + whole.error);
        return std::move(whole.text);
    }

    // The file's contents without the trailing newline editors add.
    std::string read(const std::string& key, const SecretFile& file)
    {
        auto whole = contents(key, file);
        if (!whole)
            return {};
        std::string text = std::move(*whole);
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
            text.pop_back();
        if (text.empty())
            error(key, file.shown + " is empty");
        return text;
    }

    // A password or a token: text that goes into CONNECT.
    std::string secret(const std::string& key, const std::string& written)
    {
        const SecretFile file = locate(key, written);
        if (file.path.empty())
            return {};
        std::string text = read(key, file);
        if (auto problem = unsendable(text))
            error(key,
                file.shown + " holds " + *problem +
                    ", which nats.c would send unescaped in CONNECT; use another secret (it is not shown)");
        return text;
    }

    // A credentials file, which nats.c reads itself at every connect.
    std::string credentials(const std::string& key, const std::string& written)
    {
        const SecretFile file = locate(key, written);
        if (file.path.empty())
            return {};
        if (auto text = contents(key, file); text && !is_jwt(user_jwt(*text)))
            error(key,
                file.shown +
                    " does not hold a user JWT (three base64url parts joined by dots) in a -----BEGIN NATS USER "
                    "JWT----- section");
        return file.path;
    }

private:
    const config::Origin& origin_;
};

}  // namespace

std::optional<std::string> nkey_public_from_seed(const std::string& seed)
{
    // A seed decodes to: 2 prefix bytes (seed marker + key type), the 32-byte
    // Ed25519 seed, and a little-endian CRC-16 of what precedes it.
    const auto raw = base32_decode(seed);
    if (!raw || raw->size() != 36)
        return std::nullopt;
    const std::uint16_t crc = static_cast<std::uint16_t>((*raw)[34] | ((*raw)[35] << 8));
    if (crc16(raw->data(), 34) != crc)
        return std::nullopt;
    const std::uint8_t seed_prefix = 18 << 3;  // 'S'
    if (((*raw)[0] & 0xf8) != seed_prefix)
        return std::nullopt;
    const std::uint8_t type = static_cast<std::uint8_t>((((*raw)[0] & 0x07) << 5) | (((*raw)[1] & 0xf8) >> 3));

    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, raw->data() + 2, 32), EVP_PKEY_free);
    std::array<std::uint8_t, 32> public_key{};
    std::size_t length = public_key.size();
    if (!key || EVP_PKEY_get_raw_public_key(key.get(), public_key.data(), &length) != 1 || length != 32)
        return std::nullopt;

    std::vector<std::uint8_t> encoded{type};
    encoded.insert(encoded.end(), public_key.begin(), public_key.end());
    const std::uint16_t public_crc = crc16(encoded.data(), encoded.size());
    encoded.push_back(static_cast<std::uint8_t>(public_crc & 0xff));
    encoded.push_back(static_cast<std::uint8_t>(public_crc >> 8));
    return base32_encode(encoded);
}

AuthResult resolve_auth(const config::NatsConfig& nats, const config::Origin& origin)
{
    Resolver resolver(origin);
    Auth auth;
    auth.credentials_file = resolver.credentials("nats.credentials_file", nats.credentials_file);
    auth.user = nats.user;
    auth.password = resolver.secret("nats.password_file", nats.password_file);
    auth.token = resolver.secret("nats.token_file", nats.token_file);
    if (!nats.nkey_seed_file.empty()) {
        const SecretFile file = resolver.locate("nats.nkey_seed_file", nats.nkey_seed_file);
        auth.nkey_seed_file = file.path;
        if (!file.path.empty()) {
            const std::string seed = resolver.read("nats.nkey_seed_file", file);
            if (auto public_key = nkey_public_from_seed(seed))
                auth.nkey_public = *public_key;
            else if (!seed.empty())
                resolver.error(
                    "nats.nkey_seed_file", file.shown + " does not hold an NKey seed (a line starting with S)");
        }
    }
    auth.ca_file = resolver.readable("nats.tls.ca_file", nats.tls.ca_file);
    auth.cert_file = resolver.readable("nats.tls.cert_file", nats.tls.cert_file);
    auth.key_file = resolver.readable("nats.tls.key_file", nats.tls.key_file);
    if (!resolver.errors.empty())
        return {std::nullopt, std::move(resolver.errors)};
    return {std::move(auth), {}};
}

Loaded load_settings(const std::string& path, Secrets secrets)
{
    return load_settings(path, {}, secrets);
}

Loaded load_settings(
    const std::optional<std::string>& path, const std::vector<config::Override>& overrides, Secrets secrets)
{
    auto loaded = config::load(path, overrides);
    if (loaded.config)
        if (auto problem = oversized_heartbeat(*loaded.config, loaded.origin)) {
            loaded.errors.push_back(std::move(*problem));
            loaded.config.reset();
        }
    if (!loaded.config || secrets == Secrets::leave)
        return {std::move(loaded.config), std::nullopt, std::move(loaded.origin), std::move(loaded.errors)};
    auto resolved = resolve_auth(loaded.config->nats, loaded.origin);
    return {std::move(loaded.config), std::move(resolved.auth), std::move(loaded.origin), std::move(resolved.errors)};
}

}  // namespace cim::nats
