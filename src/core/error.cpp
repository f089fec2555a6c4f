#include <eventlog/core/error.hpp>

namespace eventlog {

const char* ToString(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::kTransient:
            return "transient";
        case ErrorKind::kInDoubt:
            return "in_doubt";
        case ErrorKind::kRejected:
            return "rejected";
        case ErrorKind::kConfiguration:
            return "configuration";
        case ErrorKind::kInvalidInput:
            return "invalid_input";
        case ErrorKind::kFatal:
            return "fatal";
    }
    return "unknown";
}

}  // namespace eventlog
