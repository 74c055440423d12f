#include "log.hpp"

#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-journal.h>

namespace cim::log {

namespace {

std::mutex node_id_mutex;
std::string node_id;

int priority(spdlog::level::level_enum level)
{
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
        return LOG_DEBUG;
    case spdlog::level::info:
        return LOG_INFO;
    case spdlog::level::warn:
        return LOG_WARNING;
    case spdlog::level::err:
        return LOG_ERR;
    case spdlog::level::critical:
        return LOG_CRIT;
    default:
        return LOG_INFO;
    }
}

// Native journal entries: structured fields instead of a formatted line.
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override
    {
        std::string id;
        {
            std::lock_guard lock(node_id_mutex);
            id = node_id;
        }
        const auto& payload = msg.payload;
        sd_journal_send("MESSAGE=%.*s", static_cast<int>(payload.size()), payload.data(), "PRIORITY=%d",
            priority(msg.level), "SYSLOG_IDENTIFIER=cim-leaf", "CIM_NODE_ID=%s", id.c_str(), nullptr);
    }
    void flush_() override { }
};

// JOURNAL_STREAM is "device:inode" of the stream systemd connected stderr to.
bool stderr_is_journal()
{
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream)
        return false;
    unsigned long long device = 0, inode = 0;
    if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2)
        return false;
    struct stat st { };
    return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

}  // namespace

void setup()
{
    std::shared_ptr<spdlog::logger> logger;
    if (stderr_is_journal()) {
        logger = std::make_shared<spdlog::logger>("cim-leaf", std::make_shared<JournalSink>());
    } else {
        logger = std::make_shared<spdlog::logger>("cim-leaf", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    }
    logger->flush_on(spdlog::level::trace);  // a daemon's log is worthless if lost in a crash
    spdlog::set_default_logger(std::move(logger));
}

std::optional<spdlog::level::level_enum> parse_level(std::string_view name)
{
    if (name == "trace")
        return spdlog::level::trace;
    if (name == "debug")
        return spdlog::level::debug;
    if (name == "info")
        return spdlog::level::info;
    if (name == "warn")
        return spdlog::level::warn;
    if (name == "error")
        return spdlog::level::err;
    return std::nullopt;
}

void set_level(spdlog::level::level_enum level)
{
    spdlog::set_level(level);
}

void set_node_id(const std::string& id)
{
    std::lock_guard lock(node_id_mutex);
    node_id = id;
}

}  // namespace cim::log
