// libFuzzer target: any bytes as a config file must give a Config or errors,
// never a crash, hang or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto result =
        cim::config::load_string(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
    if (result.config.has_value() == !result.errors.empty())
        __builtin_trap();  // exactly one of the two
    for (const auto& error : result.errors)
        (void)error.str();
    return 0;
}
