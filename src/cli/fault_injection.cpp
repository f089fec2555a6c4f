#include "cli/fault_injection.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <memory>
#include <mutex>
#include <string>

namespace eventlog::cli {

relay::StepProbe FaultInjectionFromEnvironment() {
    const char* point = std::getenv("EVENTLOG_FAULT_POINT");
    if (point == nullptr || *point == '\0') return {};
    const char* after = std::getenv("EVENTLOG_FAULT_AFTER");
    const char* action_env = std::getenv("EVENTLOG_FAULT_ACTION");
    const std::string action = action_env != nullptr && *action_env != '\0' ? action_env : "kill";
    if (action != "kill" && action != "throw" && action != "stop") {
        throw ConfigError("EVENTLOG_FAULT_ACTION: expected kill, throw or stop, got \"" + action + "\"");
    }
    struct State {
        std::string point;
        std::string action;
        std::mutex mutex;
        int remaining{1};  // guarded by mutex: the store's reading thread and the loop may both reach steps
    };
    auto state = std::make_shared<State>();
    state->point = point;
    state->action = action;
    state->remaining = after != nullptr ? std::max(1, std::atoi(after)) : 1;
    log::Warning(
        "fault_injection_armed",
        {{"point", state->point}, {"after", static_cast<std::int64_t>(state->remaining)}, {"action", state->action}});
    return [state](std::string_view step) {
        if (step != state->point) return;
        {
            const std::lock_guard<std::mutex> lock(state->mutex);
            if (state->remaining <= 0 || --state->remaining > 0) return;
        }
        log::Warning("fault_point_" + state->action, {{"point", state->point}});
        if (state->action == "throw") {
            TransientError error("injected fault at " + state->point, false);
            error.SetOrigin(ErrorSource::kClickHouse, "210");  // NETWORK_ERROR: as if the server went away
            throw error;
        }
        // stop: the whole process halts here (a test sends SIGCONT after doing what it wanted meanwhile); kill: gone.
        ::kill(::getpid(), state->action == "stop" ? SIGSTOP : SIGKILL);
    };
}

}  // namespace eventlog::cli
