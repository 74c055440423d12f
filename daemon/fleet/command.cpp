#include "fleet/command.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <set>

#include <nats/nats.h>

#include "fleet/gather.hpp"
#include "fleet/report.hpp"
#include "fleet/view.hpp"
#include "nats/auth.hpp"
#include "util/text.hpp"

namespace cim::fleet {

namespace {

// How the fleet's own connection shows in the server's connection lists.
constexpr const char* connection_name = "cim-leaf-fleet";

// After the command: how long nats.c's library threads may take to end.
constexpr int nats_exit_bound_ms = 1000;

// Usage when every problem is a flag's, configuration when any is the file's.
int settings_failed(const cli::Fleet& options, const std::vector<config::Diagnostic>& errors)
{
    for (const auto& diagnostic : errors)
        std::cerr << "cim-leaf fleet: " << diagnostic.str() << "\n";
    const bool flags_only = std::all_of(errors.begin(), errors.end(), [&](const config::Diagnostic& diagnostic) {
        return std::any_of(options.overrides.begin(), options.overrides.end(),
            [&](const config::Override& override) { return override.flag == diagnostic.file; });
    });
    if (flags_only) {
        std::cerr << "\n" << cli::usage;
        return cli::exit_usage;
    }
    std::cerr << "cim-leaf fleet: --server, --creds, --token-file and the other connection flags stand in for the "
                 "file's settings\n";
    return cli::exit_config;
}

int run(const cli::Fleet& options)
{
    auto loaded = nats::load_settings(options.config_path, options.overrides, nats::Secrets::read);
    if (!loaded.errors.empty())
        return settings_failed(options, loaded.errors);
    config::NatsConfig nats = loaded.config->nats;
    nats.name = connection_name;
    const std::string subject = loaded.config->subjects.prefix + ".health";

    std::set<std::string> answered;
    const auto enough = [&](const std::string& answer) {
        if (auto node = node_of(answer))
            answered.insert(std::move(*node));
        return options.expect && met(*options.expect, answered);
    };
    const Gathered gathered = gather(nats, *loaded.auth, subject, options.timeout, enough);
    if (gathered.failure) {
        std::cerr << "cim-leaf fleet: " << *gathered.failure << " (" << util::join(nats.servers, ", ") << ")\n";
        return cli::exit_not_running;
    }

    const Report report = make_report(gathered.answers, options.expect);
    if (options.json)
        std::cout << report_json(report).dump(2) << "\n";
    else
        std::cout << render(report, colour_wanted(isatty(STDOUT_FILENO) == 1, std::getenv("NO_COLOR")));
    if (gathered.answers.empty())
        std::cerr << "cim-leaf fleet: "
                  << (gathered.no_responders
                             ? "nobody subscribes to " + subject
                             : "no answer on " + subject + " within " + config::format_duration(options.timeout))
                  << "\n";
    return exit_status(report);
}

}  // namespace

int fleet_command(const cli::Fleet& options)
{
    const int code = run(options);
    nats_CloseAndWait(nats_exit_bound_ms);  // joins nats.c's library threads
    return code;
}

}  // namespace cim::fleet
