#pragma once

#include <eventlog/core/error.hpp>
#include <eventlog/http/server.hpp>

namespace eventlog::http {

/// The one table from the project's error kinds to HTTP answers (docs/http-api.md, "Errors"). The answer carries
/// only our own text for the class of error; the caller logs `error.what()` (server text stays in the log):
///   kInvalidInput  -> 400 (23505 unique_violation -> 409), with the field when the error names one
///   kTransient     -> 503 + Retry-After (a free pool slot, a restarting server, a serialisation failure)
///   kInDoubt       -> 503 + Retry-After (the commit's outcome is unknown; a retry with the same event_ids is safe)
///   kRejected      -> 422
///   kConfiguration -> 500 (missing privilege or object: the operator's to fix)
///   kFatal         -> 500
Problem ProblemFor(const Error& error);

/// The status alone for `kind` (the table above, without SQLSTATE refinements).
int StatusFor(ErrorKind kind) noexcept;

/// Seconds a client should wait before retrying a 503.
inline constexpr int kRetryAfterSeconds = 1;

}  // namespace eventlog::http
