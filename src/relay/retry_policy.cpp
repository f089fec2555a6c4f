#include "relay/detail/retry_policy.hpp"

namespace eventlog::relay::detail {

const char* ToString(Action action) noexcept {
    switch (action) {
        case Action::kRetry:
            return "retry";
        case Action::kReconcileAndRetry:
            return "reconcile_and_retry";
        case Action::kBisect:
            return "bisect";
        case Action::kDeadLetter:
            return "dead_letter";
        case Action::kPause:
            return "pause";
        case Action::kLeaveToRecovery:
            return "leave_to_recovery";
        case Action::kStop:
            return "stop";
    }
    return "unknown";
}

Action Decide(const Error& error, const SendState& state) {
    if (state.session_lost) return Action::kLeaveToRecovery;
    switch (error.Kind()) {
        case ErrorKind::kFatal:
        case ErrorKind::kInvalidInput:
            return Action::kStop;
        case ErrorKind::kInDoubt:
            return Action::kLeaveToRecovery;
        case ErrorKind::kConfiguration:
            return Action::kPause;
        case ErrorKind::kRejected:
            break;
        case ErrorKind::kTransient:
            if (!state.unknown_cause || state.failures + 1 < state.max_attempts) return Action::kReconcileAndRetry;
            break;  // an unknown cause that keeps repeating is treated as a rejection of these rows
    }
    if (state.rows > 1) return Action::kBisect;
    return state.row_attempts + 1 >= state.max_attempts ? Action::kDeadLetter : Action::kRetry;
}

}  // namespace eventlog::relay::detail
