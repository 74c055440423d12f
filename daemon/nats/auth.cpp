#include "nats/auth.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "util/file.hpp"

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

// A secret file as the config names it.
struct SecretFile {
    std::string path;  // resolved; empty when unused or unresolvable
    // How errors name it: an absolute path as written, a credential name not
    // at all, since an operator may have written the secret itself there.
    std::string shown;
};

class Resolver {
public:
    explicit Resolver(const config::Origin& origin) : origin_(origin) { }

    std::vector<std::string> errors;

    void error(const std::string& key, std::string message)
    {
        errors.push_back(config::diagnostic_at(origin_, key, std::move(message)).str());
    }

    // An absolute path stays; a credential name resolves in $CREDENTIALS_DIRECTORY.
    SecretFile locate(const std::string& key, const std::string& written)
    {
        if (written.empty() || written.front() == '/')
            return {written, written};
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
            read(key, file);
        return file.path;
    }

    // The file's contents without the trailing newline editors add.
    std::string read(const std::string& key, const SecretFile& file)
    {
        auto contents = util::read_regular_file(file.path, max_secret_bytes);
        if (!contents.text) {
            error(key, file.shown + ": " + contents.error);
            return {};
        }
        std::string text = std::move(*contents.text);
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
            text.pop_back();
        if (text.empty())
            error(key, file.shown + " is empty");
        return text;
    }

    std::string secret(const std::string& key, const std::string& written)
    {
        const SecretFile file = locate(key, written);
        return file.path.empty() ? std::string() : read(key, file);
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
    auth.credentials_file = resolver.readable("nats.credentials_file", nats.credentials_file);
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

}  // namespace cim::nats
