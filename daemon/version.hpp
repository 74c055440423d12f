#pragma once

namespace cim {

// The SemVer of this build, from meson's project() version.
inline constexpr const char* version_string = CIM_LEAF_VERSION;

}  // namespace cim
