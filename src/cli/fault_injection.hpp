#pragma once

#include <eventlog/relay/relay.hpp>

namespace eventlog::cli {

/// The relay's test seam wired to the environment, for the crash and fault tests that run the `eventlog` binary
/// (docs/delivery.md, "Test switch"): EVENTLOG_FAULT_POINT=<step> acts the EVENTLOG_FAULT_AFTER-th time (default 1st)
/// delivery reaches that step, once, as EVENTLOG_FAULT_ACTION says: `kill` (the default) SIGKILLs the process,
/// `throw` throws a transient ClickHouse error (code 210, as if the server went away), `stop` SIGSTOPs the process
/// (the test does something meanwhile, then sends SIGCONT). Each logs `fault_point_<action>` first. Steps are listed
/// at relay::StepProbe. Returns an empty probe (nothing checked) when EVENTLOG_FAULT_POINT is not set, as in
/// production; throws ConfigError for an unknown action.
relay::StepProbe FaultInjectionFromEnvironment();

}  // namespace eventlog::cli
