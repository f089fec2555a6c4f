#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace eventlog {

/// What the caller should do about an error.
enum class ErrorKind {
    kTransient,      ///< Retry the same call after a backoff (network blip, server restarting, timeout before send).
    kInDoubt,        ///< The outcome is unknown (commit or insert may have happened): reconcile, then retry.
    kRejected,       ///< The server refused this content: retrying the same rows fails again (isolate poison).
    kConfiguration,  ///< Missing table/database, bad credentials, bad settings: pause loudly, never drop data.
    kInvalidInput,   ///< The caller's input is malformed: report it, write nothing.
    kFatal,          ///< A bug or an unrecoverable state: stop.
};

/// Returns a stable lower-case name for `kind` ("transient", "in_doubt", ...).
const char* ToString(ErrorKind kind) noexcept;

/// The server an error came from; with Error::Code() it identifies the cause for retry decisions, metric labels
/// and HTTP statuses.
enum class ErrorSource {
    kNone,        ///< Raised by eventlog itself (configuration, encoding, a transport failure without a code).
    kPostgres,    ///< Code() is the SQLSTATE.
    kClickHouse,  ///< Code() is the server's numeric error code, or "HTTP nnn" when the answer carried none.
};

/// Root of every error eventlog throws. Copyable; carries the retry classification and whether the
/// connection that produced it must be discarded.
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message, bool poisons_connection = false)
        : std::runtime_error(message), kind_(kind), poisons_connection_(poisons_connection) {}

    /// The retry classification.
    ErrorKind Kind() const noexcept { return kind_; }
    /// True when the connection that raised it is unusable and must be reopened.
    bool PoisonsConnection() const noexcept { return poisons_connection_; }
    /// The server that reported it (kNone when eventlog raised it).
    ErrorSource Source() const noexcept { return source_; }
    /// The server's code (SQLSTATE or ClickHouse code), "" when there is none.
    const std::string& Code() const noexcept { return code_; }
    /// Records the server and the code (set by the layer that parsed the server's answer).
    void SetOrigin(ErrorSource source, std::string code) {
        source_ = source;
        code_ = std::move(code);
    }

private:
    ErrorKind kind_;
    bool poisons_connection_;
    ErrorSource source_{ErrorSource::kNone};
    std::string code_;
};

/// A retryable fault (network, server unavailable, lock timeout).
class TransientError : public Error {
public:
    explicit TransientError(const std::string& message, bool poisons_connection = true)
        : Error(ErrorKind::kTransient, message, poisons_connection) {}
};

/// A commit or insert whose outcome is unknown.
class InDoubtError : public Error {
public:
    explicit InDoubtError(const std::string& message) : Error(ErrorKind::kInDoubt, message, true) {}
};

/// The server rejected the content itself; the same rows will be rejected again.
class RejectedError : public Error {
public:
    explicit RejectedError(const std::string& message) : Error(ErrorKind::kRejected, message, false) {}
};

/// Configuration or environment is wrong (bad variable, missing table, bad password).
class ConfigError : public Error {
public:
    explicit ConfigError(const std::string& message, bool poisons_connection = false)
        : Error(ErrorKind::kConfiguration, message, poisons_connection) {}
};

/// Malformed input from a producer; `Field()` names the offending field.
class InvalidInputError : public Error {
public:
    InvalidInputError(std::string field, const std::string& message)
        : Error(ErrorKind::kInvalidInput, field + ": " + message), field_(std::move(field)) {}
    /// The name of the field that failed validation.
    const std::string& Field() const noexcept { return field_; }

private:
    std::string field_;
};

}  // namespace eventlog
