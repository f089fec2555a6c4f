#include "relay/detail/retry_policy.hpp"

#include <eventlog/clickhouse/errors.hpp>

namespace eventlog::relay::detail {

const char* ToString(Action action) noexcept {
    switch (action) {
        case Action::kRetry:
            return "retry";
        case Action::kReconcileAndRetry:
            return "reconcile_and_retry";
        case Action::kBisect:
            return "bisect";
        case Action::kDefer:
            return "defer";
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
    bool evidence_needed = false;  // dead-letter a single row only when other rows got through
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
            switch (state.cause) {
                case Cause::kClassified:
                    return Action::kReconcileAndRetry;
                case Cause::kRefused:
                    return Action::kRetry;
                case Cause::kTooLarge:
                case Cause::kUnknownCode:
                    if (state.failures + 1 < state.max_attempts) {
                        return state.cause == Cause::kTooLarge ? Action::kRetry : Action::kReconcileAndRetry;
                    }
                    evidence_needed = true;
                    break;
            }
            break;
    }
    if (state.rows > 1) return Action::kBisect;
    if (evidence_needed && !state.others_accepted) {
        return state.others_waiting ? Action::kDefer : Action::kReconcileAndRetry;
    }
    return state.row_attempts + 1 >= state.max_attempts ? Action::kDeadLetter : Action::kReconcileAndRetry;
}

const char* ToString(LoopAction action) noexcept {
    switch (action) {
        case LoopAction::kStop:
            return "stop";
        case LoopAction::kPause:
            return "pause";
        case LoopAction::kReconnect:
            return "reconnect";
    }
    return "unknown";
}

LoopAction DecideLoop(const Error& error) noexcept {
    switch (error.Kind()) {
        case ErrorKind::kFatal:
        case ErrorKind::kInvalidInput:
            return LoopAction::kStop;
        case ErrorKind::kConfiguration:
            return LoopAction::kPause;
        case ErrorKind::kTransient:
        case ErrorKind::kInDoubt:
        case ErrorKind::kRejected:
            break;
    }
    return LoopAction::kReconnect;
}

Cause CauseOf(const Error& error) {
    if (error.Source() != ErrorSource::kClickHouse || error.Code().empty()) return Cause::kClassified;
    if (error.Code().rfind("HTTP ", 0) == 0) return error.Code() == "HTTP 413" ? Cause::kTooLarge : Cause::kRefused;
    return clickhouse::IsUnknownServerError(error) ? Cause::kUnknownCode : Cause::kClassified;
}

}  // namespace eventlog::relay::detail
