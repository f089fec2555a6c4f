#include <eventlog/observability/version.hpp>

#ifndef EVENTLOG_VERSION
#error "EVENTLOG_VERSION must be defined by the build (CMakeLists.txt)"
#endif

namespace eventlog::observability {

std::string_view Version() noexcept { return EVENTLOG_VERSION; }

}  // namespace eventlog::observability
