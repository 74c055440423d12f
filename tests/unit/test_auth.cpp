#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/load.hpp"
#include "nats/auth.hpp"

using namespace cim;

namespace {

// A directory of secret files for one test, removed after it.
class SecretDirectory {
public:
    SecretDirectory()
    {
        char name[] = "/tmp/cim-leaf-test-XXXXXX";
        REQUIRE(mkdtemp(name));
        path_ = name;
    }
    ~SecretDirectory() { std::filesystem::remove_all(path_); }
    SecretDirectory(const SecretDirectory&) = delete;
    SecretDirectory& operator=(const SecretDirectory&) = delete;

    std::string write(const std::string& name, const std::string& contents) const
    {
        const std::string file = path_ + "/" + name;
        std::ofstream(file, std::ios::binary) << contents;
        return file;
    }

private:
    std::string path_;
};

// The errors resolving the secrets of `yaml` gives, as printed.
std::vector<std::string> auth_errors(const std::string& yaml)
{
    const auto loaded = config::load_string(yaml, "c.yaml");
    REQUIRE(loaded.config);
    std::vector<std::string> lines;
    for (const auto& error : nats::resolve_auth(loaded.config->nats, loaded.origin).errors)
        lines.push_back(error.str());
    return lines;
}

// Real JWTs are longer; what matters is what they are made of.
const std::string jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQSJ9.c2lnLW5hdHVyZQ";
const std::string seed = "SUAOOC4CIFBWJWPSDBEL7ATEIZURY5CMMP564CEVTFZQ4M7INFFWEEAT5Q";

// A credentials file as nsc and nats.js write it.
std::string creds(const std::string& user_jwt)
{
    return "-----BEGIN NATS USER JWT-----\n" + user_jwt +
        "\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n" +
        seed + "\n------END USER NKEY SEED------\n";
}

}  // namespace

TEST_CASE("an NKey seed gives its public key")
{
    // A pair made by nkeys.js (npm), an independent implementation.
    CHECK(nats::nkey_public_from_seed("SUAOOC4CIFBWJWPSDBEL7ATEIZURY5CMMP564CEVTFZQ4M7INFFWEEAT5Q") ==
        "UASWSB6ODZQ2WF3NUKZ2P65ZMDYO56EFDR4AKL42NV4NPBLHU2TU26CA");
    CHECK(nats::nkey_public_from_seed("SAAJUBL45TTHZLMF4AO2KBO2F7PNQ2C7F6YSQV3M3VDBDVLOHVKYBSQ3LU") ==
        "AADPOOBGEWJ73TPFMKI3NW7QN65SDMCOFXGGZLWKHEP6BSVBK56KV44K");
    CHECK_FALSE(nats::nkey_public_from_seed("SUAOOC4CIFBWJWPSDBEL7ATEIZURY5CMMP564CEVTFZQ4M7INFFWEEAT5A"));  // bad CRC
    CHECK_FALSE(nats::nkey_public_from_seed("UASWSB6ODZQ2WF3NUKZ2P65ZMDYO56EFDR4AKL42NV4NPBLHU2TU26CA"));
    CHECK_FALSE(nats::nkey_public_from_seed(""));
}

TEST_CASE("a secret file's errors name the config file and the key's line:column")
{
    CHECK(auth_errors("nats:\n  token_file: /nonexistent/token\n") ==
        std::vector<std::string>{
            "c.yaml:2:3: nats.token_file: /nonexistent/token: cannot open: No such file or directory"});
    // Where a key stands is not a setting: moving it is no change to reconnect for.
    CHECK(config::load_string("nats: {token_file: /t}", "c.yaml").config->nats ==
        config::load_string("\n\nnats:\n  token_file: /t\n", "c.yaml").config->nats);
}

TEST_CASE("a secret path that is more than a path is quoted in errors")
{
    CHECK(auth_errors("nats: {token_file: \"/nonexistent/\\e[31mred: fake\\a\"}") ==
        std::vector<std::string>{
            "c.yaml:1:8: nats.token_file: \"/nonexistent/\\u001b[31mred: fake\\u0007\": cannot open: No such file or "
            "directory"});
}

TEST_CASE("a password or a token nats.c would put into CONNECT unescaped is refused, and not shown")
{
    const SecretDirectory directory;
    for (const auto& [secret, what] : std::vector<std::pair<std::string, std::string>>{
             {"Qx9\"", "a '\"'"},
             {"Qx9\\", "a '\\'"},
             {"Qx9\t", "a control character"},
             {"Qx9\x01", "a control character"},
             {"Qx9\x7f", "a control character"},
             {"Qx9\nQx9\n", "a control character"},
             {std::string("Qx9\0", 4), "a control character"},
             {"Qx9\xff", "invalid UTF-8"},
             {"Qx9\xc3", "invalid UTF-8"},
         }) {
        CAPTURE(secret);
        const std::string file = directory.write("password", secret);
        const auto errors = auth_errors("nats:\n  user: leaf\n  password_file: " + file + "\n");
        REQUIRE(errors.size() == 1);
        CHECK(errors.front() ==
            "c.yaml:3:3: nats.password_file: " + file + " holds " + what +
                ", which nats.c would send unescaped in CONNECT; use another secret (it is not shown)");
        CHECK(auth_errors("nats: {token_file: " + directory.write("token", secret) + "}").size() == 1);
    }
    // What JSON carries as it is: UTF-8, spaces, quotes of other kinds.
    for (const std::string& secret :
        std::vector<std::string>{"p\xc3\xa4ss w\xc3\xb6rd", "it's `x` {}", "\xf0\x9f\x94\x91"}) {
        CAPTURE(secret);
        CHECK(auth_errors("nats: {token_file: " + directory.write("token", secret + "\n") + "}").empty());
    }
}

TEST_CASE("a credentials file's JWT is checked where nats.c finds it")
{
    const SecretDirectory directory;
    auto errors = [&](const std::string& contents) {
        return auth_errors("nats:\n  credentials_file: " + directory.write("creds", contents) + "\n");
    };
    CHECK(errors(creds(jwt)).empty());
    CHECK(errors(jwt).empty());  // no headers: nats.c sends the whole file
    const std::string refused = "c.yaml:2:3: nats.credentials_file: " + directory.write("creds", "") +
        " does not hold a user JWT (three base64url parts joined by dots) in a -----BEGIN NATS USER JWT----- "
        "section";
    for (const std::string& contents : std::vector<std::string>{
             creds(jwt + "\",\"user\":\"admin"),  // fields injected into CONNECT
             creds(jwt + "\\"),
             creds(jwt + "\x01"),
             creds(jwt + " "),
             creds(""),  // the seed's section is then the first one, and would be sent
             creds("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVQSJ9"),
             creds(jwt + ".x"),
             std::string(""),
             jwt + "\n",  // nats.c sends the newline too
             jwt + "\n" + seed + "\n",  // and the seed with it
             "-----BEGIN NATS USER JWT-----\r\n" + jwt + "\r\n------END NATS USER JWT------\r\n",
         }) {
        CAPTURE(contents);
        CHECK(errors(contents) == std::vector<std::string>{refused});
    }
    // nats.c takes the line after the first header that a header follows,
    // and looks at no line twice: here the fourth line.
    CHECK(errors("---a---\nbad\"\nnot a header\n---b---\n" + jwt + "\n---c---\n").empty());
    CHECK(errors("---a---\n---b---\nx\n---c---\n" + jwt + "\n").size() == 1);
    // It reads the file as a C string.
    CHECK(errors(jwt + std::string("\0\"junk", 6)).empty());
}

TEST_CASE("load_settings: the file, then its secrets when asked, every problem as a Diagnostic")
{
    const SecretDirectory directory;
    const std::string config = directory.write(
        "config.yaml", "nats:\n  token_file: " + directory.write("token", "s3cret\n") + "\ndbus: {bus: session}\n");
    auto loaded = nats::load_settings(config, nats::Secrets::read);
    CHECK(loaded.errors.empty());
    REQUIRE(loaded.auth);
    CHECK(loaded.auth->token == "s3cret");
    REQUIRE(loaded.config);
    CHECK(loaded.config->dbus.bus == config::Bus::session);
    CHECK(config::diagnostic_at(loaded.origin, "dbus.bus", "x").str() == config + ":3:8: dbus.bus: x");

    directory.write("token", "s3\"cret");
    loaded = nats::load_settings(config, nats::Secrets::read);
    CHECK(loaded.config);  // the file itself is valid
    CHECK_FALSE(loaded.auth);
    REQUIRE(loaded.errors.size() == 1);
    CHECK(loaded.errors.front().key == "nats.token_file");
    CHECK(loaded.errors.front().line == 2);
    // --check-config leaves the secrets alone: they may not exist where it runs.
    loaded = nats::load_settings(config, nats::Secrets::leave);
    CHECK(loaded.config);
    CHECK(loaded.errors.empty());

    directory.write("config.yaml", "nats: {token_file: /nonexistent}\nlog: {level: loud}\n");
    loaded = nats::load_settings(config, nats::Secrets::read);
    CHECK_FALSE(loaded.config);
    CHECK_FALSE(loaded.auth);
    REQUIRE(loaded.errors.size() == 1);  // secrets are not read for an invalid file
    CHECK(loaded.errors.front().key == "log.level");
}
