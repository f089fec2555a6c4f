#pragma once

#include <cstddef>
#include <eventlog/core/error.hpp>

namespace eventlog::relay::detail {

/// What the batch sender does about one failed attempt to deliver a chunk of rows.
enum class Action {
    kRetry,              ///< Back off, then send the same rows again: the request was refused unread, nothing landed.
    kReconcileAndRetry,  ///< Back off, ask ClickHouse which rows landed, send the rest.
    kBisect,             ///< Reconcile, then send each half on its own: isolate the rows that fail.
    kDefer,              ///< Reconcile this single row later, after the other chunks of the delivery have been tried.
    kDeadLetter,         ///< Reconcile the single row; if it is still missing, move it to the dead letters.
    kPause,              ///< Configuration is wrong: leave the rows in their delivery records, pause loudly.
    kLeaveToRecovery,    ///< End this session; recovery fences any attempt still running, then finishes the rows.
    kStop,               ///< A bug or unrecoverable state: stop the relay.
};

/// Returns a stable lower-case name ("retry", "bisect", ...) for logs.
const char* ToString(Action action) noexcept;

/// Why an attempt failed, as far as the rows are concerned.
enum class Cause {
    kClassified,   ///< ClickHouse answered with a code this library classifies, or nothing reached the server.
    kUnknownCode,  ///< ClickHouse answered with a code nobody classified: maybe about the rows, maybe not.
    kRefused,      ///< An HTTP status without a ClickHouse code (a proxy's 429 or 4xx): the request was refused
                   ///< before ClickHouse read it; says nothing about the rows and wrote nothing.
    kTooLarge,     ///< HTTP 413 without a ClickHouse code: the request was too large for something on the way.
};

/// The sender's situation when an attempt failed.
struct SendState {
    std::size_t rows{0};       ///< Rows in the failing chunk.
    int failures{0};           ///< Earlier consecutive failures of this chunk.
    int row_attempts{0};       ///< For a single row: its earlier rejections.
    int max_attempts{5};       ///< RELAY_MAX_ATTEMPTS.
    bool session_lost{false};  ///< Our PostgreSQL session (and with it the batch's ownership) is gone.
    Cause cause{Cause::kClassified};
    bool others_accepted{false};  ///< An insert of this delivery has succeeded since the chunk first failed.
    bool others_waiting{false};   ///< Other chunks of this delivery wait behind this one.
};

/// The retry decision, a pure function of the error's class and the sender's state:
/// - a lost session leaves the rows to recovery, whatever the error;
/// - fatal stops; an in-doubt insert (timeout, connection lost after the body left) ends the session, because only
///   the recovery fence can tell an attempt still running on the server from one that never will;
/// - configuration pauses;
/// - a failure that says nothing about the rows (a refused request, a classified transient code, a network error)
///   backs off and retries the whole chunk, however long it lasts: it never bisects and never dead-letters;
/// - a rejection bisects a chunk; a single rejected row is reconciled and retried, and dead-lettered (after a last
///   presence check) once it has failed `max_attempts` times;
/// - an unknown code, or a 413, is retried `max_attempts` times, then bisected; a single row failing that way is
///   dead-lettered only when another insert of the delivery succeeded meanwhile (evidence that the failure is about
///   this row, not about the server); without that evidence it waits behind the other chunks (kDefer) or, alone,
///   backs off and retries, delivery paused until the cause goes away.
Action Decide(const Error& error, const SendState& state);

/// What the delivery loop does about an error that ended one of its steps (connecting, recovery, a claim, a
/// delivery, an acknowledgement). The loop acts on this and classifies nothing itself.
enum class LoopAction {
    kStop,       ///< Fatal or invalid input: a bug or corrupt state that a restart would meet again; the relay exits.
    kPause,      ///< Configuration: the records stay, delivery pauses loudly and is retried with backoff.
    kReconnect,  ///< Anything else (transient, in doubt, a rejection that escaped the sender): this session ends after
                 ///< backoff, and the next one's recovery fences it and finishes its records.
};

/// Returns a stable lower-case name ("stop", "pause", "reconnect") for logs.
const char* ToString(LoopAction action) noexcept;

/// The loop's decision, a pure function of the error's kind (issue 19: the loop acts on it instead of classifying
/// the error again).
LoopAction DecideLoop(const Error& error) noexcept;

/// The cause of a failed attempt as Decide() needs it: an HTTP status without a ClickHouse code (e.g. a proxy's
/// 429) is kRefused, or kTooLarge for 413; a ClickHouse code nobody classified is kUnknownCode; the rest kClassified.
Cause CauseOf(const Error& error);

}  // namespace eventlog::relay::detail
