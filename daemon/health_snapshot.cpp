#include "health_snapshot.hpp"

#include "health.hpp"
#include "util/json.hpp"

namespace cim {

void HealthSnapshot::update(const LiveState& live)
{
    std::lock_guard lock(mutex_);
    live_ = live;
    rendered_.clear();
}

std::string HealthSnapshot::json() const
{
    const auto now = std::chrono::system_clock::now();
    std::lock_guard lock(mutex_);
    if (rendered_.empty() || now - rendered_at_ >= std::chrono::milliseconds(1)) {
        rendered_ = util::dump(health_json(live_, now, std::chrono::steady_clock::now()));
        rendered_at_ = now;
    }
    return rendered_;
}

}  // namespace cim
