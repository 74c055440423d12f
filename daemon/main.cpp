#include <chrono>
#include <cstdlib>
#include <iostream>

#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "config/schema.hpp"
#include "dbus/bus.hpp"
#include "dbus/status_command.hpp"
#include "event_loop.hpp"
#include "fleet/command.hpp"
#include "leaf.hpp"
#include "log.hpp"
#include "nats/auth.hpp"
#include "nats/library.hpp"
#include "nats/link.hpp"
#include "version.hpp"

namespace {

using namespace cim;

// Every problem, one line each: on stderr for --check-config, to the log
// when the daemon starts.
void report(const std::vector<config::Diagnostic>& errors, bool interactive)
{
    for (const auto& diagnostic : errors) {
        if (interactive)
            std::cerr << diagnostic.str() << "\n";
        else
            spdlog::error("{}", diagnostic.str());
    }
}

int check_config(const cli::CheckConfig& options)
{
    const auto loaded = nats::load_settings(options.config_path, nats::Secrets::leave);
    report(loaded.errors, true);
    return loaded.config ? 0 : cli::exit_config;
}

// After the loop: how long NATS may still drain and its threads take to
// let go of the daemon; with Leaf's own bounds, SIGTERM exits within 3 s.
constexpr std::chrono::milliseconds nats_exit_bound{600};

int run(const cli::Run& options)
{
    nats::Library library;
    auto loaded = nats::load_settings(options.config_path, nats::Secrets::read);
    report(loaded.errors, false);
    if (!loaded.errors.empty()) {
        library.close(nats_exit_bound);
        return cli::exit_config;
    }

    EventLoop loop;
    Leaf::Parts parts{
        .connect_nats =
            [&loop](const config::Config& config, const nats::Auth& auth, nats::Handlers handlers) {
                return nats::Link::start(loop, config, auth, std::move(handlers));
            },
        .connect_bus =
            [&loop](config::Bus bus, dbus::Control& control, dbus::Handlers handlers) {
                return std::make_unique<dbus::Bus>(loop, bus, control, std::move(handlers));
            },
    };
    Leaf leaf(loop,
        {.config_path = options.config_path,
            .log_level = options.log_level ? log::parse_level(*options.log_level) : std::nullopt,
            .state_directory = events::default_state_directory()},
        std::move(*loaded.config), std::move(*loaded.auth), std::move(parts));
    leaf.start();
    const int code = loop.run();
    leaf.finish(nats_exit_bound / 2);
    if (!nats::Link::wait_for_all_stopped(nats_exit_bound)) {
        // A connect attempt to a silent server cannot be interrupted, and
        // nothing is left to deliver: do not wait for it.
        spdlog::warn("a NATS connect attempt still runs after {} ms; exiting without it", nats_exit_bound.count());
        std::_Exit(code);
    }
    library.close(nats_exit_bound);
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
        return cli::exit_usage;
    }
    try {
        return std::visit(
            [](const auto& command) -> int {
                using T = std::decay_t<decltype(command)>;
                if constexpr (std::is_same_v<T, cli::Run>) {
                    return run(command);
                } else if constexpr (std::is_same_v<T, cli::CheckConfig>) {
                    return check_config(command);
                } else if constexpr (std::is_same_v<T, cli::PrintSchema>) {
                    std::cout << config::json_schema().dump(2) << "\n";
                    return 0;
                } else if constexpr (std::is_same_v<T, cli::PrintVersion>) {
                    std::cout << "cim-leaf " << version_string << "\n";
                    return 0;
                } else if constexpr (std::is_same_v<T, cli::Status>) {
                    return dbus::status_command(command);
                } else if constexpr (std::is_same_v<T, cli::Fleet>) {
                    return fleet::fleet_command(command);
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
