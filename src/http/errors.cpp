#include <eventlog/http/errors.hpp>

namespace eventlog::http {

int StatusFor(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::kInvalidInput:
            return 400;
        case ErrorKind::kTransient:
        case ErrorKind::kInDoubt:
            return 503;
        case ErrorKind::kRejected:
            return 422;
        case ErrorKind::kConfiguration:
        case ErrorKind::kFatal:
            return 500;
    }
    return 500;
}

Problem ProblemFor(const Error& error) {
    Problem p;
    p.status = StatusFor(error.Kind());
    switch (error.Kind()) {
        case ErrorKind::kInvalidInput:
            if (error.Source() == ErrorSource::kPostgres && error.Code() == "23505") {
                p.status = 409;
                p.error = "conflict with an existing row";
            } else {
                p.error = "invalid input";
                // A server's InvalidInputError names the server, not a field of the request.
                const auto* invalid = dynamic_cast<const InvalidInputError*>(&error);
                if (invalid != nullptr && error.Source() == ErrorSource::kNone) p.field = invalid->Field();
            }
            break;
        case ErrorKind::kTransient:
            p.error = "temporarily unavailable, retry later";
            p.retry_after = kRetryAfterSeconds;
            break;
        case ErrorKind::kInDoubt:
            p.error = "outcome unknown; retrying with the same event_id values is safe";
            p.retry_after = kRetryAfterSeconds;
            break;
        case ErrorKind::kRejected:
            p.error = "rejected";
            break;
        case ErrorKind::kConfiguration:
        case ErrorKind::kFatal:
            p.error = "internal error";
            break;
    }
    return p;
}

}  // namespace eventlog::http
