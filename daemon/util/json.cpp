#include "util/json.hpp"

namespace cim::util {

std::string dump(const nlohmann::json& json)
{
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace cim::util
