#pragma once

#include <string_view>

namespace eventlog::observability {

/// eventlog's version (CMake's project version), e.g. "0.1.0": in Sentry's client name and release, the OTLP
/// scope and telemetry.sdk.version.
std::string_view Version() noexcept;

}  // namespace eventlog::observability
