#pragma once

namespace eventlog::relay::detail {

/// Test-only switch: EVENTLOG_FAULT_POINT=<name> makes the process SIGKILL itself the EVENTLOG_FAULT_AFTER-th time
/// (default 1st) it reaches the point `name`. Only the crash tests set it.
void FaultPoint(const char* name);

}  // namespace eventlog::relay::detail
