#include <chrono>
#include <cstdlib>
#include <iostream>

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "config/load.hpp"
#include "config/schema.hpp"
#include "dbus/status_command.hpp"
#include "event_loop.hpp"
#include "leaf.hpp"
#include "log.hpp"
#include "nats/auth.hpp"
#include "nats/link.hpp"
#include "nats/payloads.hpp"
#include "version.hpp"

namespace {

using namespace cim;

// Validation shared by --check-config and start-up: every problem, one line
// each. Secrets are only checked for their form here; start-up reads them.
config::LoadResult load(const std::string& path, bool interactive)
{
    auto loaded = config::load_file(path);
    if (loaded.config)
        if (auto problem = nats::oversized_heartbeat(*loaded.config, loaded.origin)) {
            loaded.errors.push_back(std::move(*problem));
            loaded.config.reset();
        }
    for (const auto& diagnostic : loaded.errors) {
        if (interactive)
            std::cerr << diagnostic.str() << "\n";
        else
            spdlog::error("{}", diagnostic.str());
    }
    return loaded;
}

// After the loop: how long NATS may still drain and its threads take to
// let go of the daemon; with Leaf's own bounds, SIGTERM exits within 3 s.
constexpr std::chrono::milliseconds nats_exit_bound{600};

int run(const cli::Run& options)
{
    auto loaded = load(options.config_path, false);
    if (!loaded.config)
        return cli::exit_config;
    auto auth = nats::resolve_auth(loaded.config->nats, loaded.origin);
    for (const auto& error : auth.errors)
        spdlog::error("{}", error);
    if (!auth.auth)
        return cli::exit_config;

    EventLoop loop;
    auto connect = [&loop](const config::Config& config, const nats::Auth& auth, nats::Handlers handlers) {
        return nats::Link::start(loop, config, auth, std::move(handlers));
    };
    Leaf leaf(loop, {options.config_path, options.log_level ? log::parse_level(*options.log_level) : std::nullopt},
        std::move(*loaded.config), std::move(*auth.auth), connect);
    const int code = leaf.start() ? loop.run() : 1;
    leaf.release_nats(nats_exit_bound / 2);
    if (!nats::Link::wait_for_all_stopped(nats_exit_bound)) {
        // A connect attempt to a silent server cannot be interrupted, and
        // nothing is left to deliver: do not wait for it.
        spdlog::warn("a NATS connect attempt still runs after {} ms; exiting without it", nats_exit_bound.count());
        std::_Exit(code);
    }
    nats_CloseAndWait(static_cast<int>(nats_exit_bound.count()));  // joins nats.c's library threads
    if (code == 0)
        spdlog::info("stopped");
    return code;
}

}  // namespace

int main(int argc, char** argv)
{
    log::setup();
    const auto parsed = cli::parse(argc, argv);
    if (!parsed.command) {
        std::cerr << "cim-leaf: " << parsed.error << "\n\n" << cli::usage;
        return 1;
    }
    try {
        return std::visit(
            [](const auto& command) -> int {
                using T = std::decay_t<decltype(command)>;
                if constexpr (std::is_same_v<T, cli::Run>) {
                    return run(command);
                } else if constexpr (std::is_same_v<T, cli::CheckConfig>) {
                    return load(command.config_path, true).config ? 0 : cli::exit_config;
                } else if constexpr (std::is_same_v<T, cli::PrintSchema>) {
                    std::cout << config::json_schema().dump(2) << "\n";
                    return 0;
                } else if constexpr (std::is_same_v<T, cli::PrintVersion>) {
                    std::cout << "cim-leaf " << version_string << "\n";
                    return 0;
                } else if constexpr (std::is_same_v<T, cli::Status>) {
                    return dbus::status_command(command);
                } else {
                    std::cout << cli::usage;
                    return 0;
                }
            },
            *parsed.command);
    } catch (const std::exception& e) {
        spdlog::critical("fatal: {}", e.what());
        return 1;
    }
}
