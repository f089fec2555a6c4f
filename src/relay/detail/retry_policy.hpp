#pragma once

#include <cstddef>
#include <eventlog/core/error.hpp>

namespace eventlog::relay::detail {

/// What the batch sender does about one failed attempt to deliver a chunk of rows.
enum class Action {
    kRetry,              ///< Back off, then send the same rows again (nothing can have been written).
    kReconcileAndRetry,  ///< Back off, ask ClickHouse which rows landed (the server answered), send the rest.
    kBisect,             ///< Reconcile, then send each half on its own: isolate the rows that fail.
    kDeadLetter,         ///< The single row is moved to the dead letters with the error.
    kPause,              ///< Configuration is wrong: leave the rows in their delivery records, pause loudly.
    kLeaveToRecovery,    ///< End this session; recovery fences any attempt still running, then finishes the rows.
    kStop,               ///< A bug or unrecoverable state: stop the relay.
};

/// Returns a stable lower-case name ("retry", "bisect", ...) for logs.
const char* ToString(Action action) noexcept;

/// The sender's situation when an attempt failed.
struct SendState {
    std::size_t rows{0};        ///< Rows in the failing chunk.
    int failures{0};            ///< Earlier consecutive failures of this chunk.
    int row_attempts{0};        ///< For a single row: its earlier rejections.
    int max_attempts{5};        ///< RELAY_MAX_ATTEMPTS.
    bool session_lost{false};   ///< Our PostgreSQL session (and with it the batch's ownership) is gone.
    bool unknown_cause{false};  ///< ClickHouse answered with a code this library does not classify.
};

/// The retry decision, a pure function of the error's class and the sender's state:
/// - a lost session leaves the rows to recovery, whatever the error;
/// - fatal stops; an in-doubt insert (timeout, connection lost after the body left) ends the session, because only
///   the recovery fence can tell an attempt still running on the server from one that never will;
/// - configuration pauses;
/// - a rejection, or an unknown cause seen `max_attempts` times, bisects a chunk and dead-letters a single row
///   once it has failed `max_attempts` times;
/// - any other transient error (the server answered, or could not be reached) reconciles and retries.
Action Decide(const Error& error, const SendState& state);

}  // namespace eventlog::relay::detail
