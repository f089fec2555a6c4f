#pragma once

#include <eventlog/core/error.hpp>
#include <string_view>

namespace eventlog::pg {

/// What an SQLSTATE means to a caller.
struct SqlstateClass {
    ErrorKind kind;           ///< The retry classification.
    bool poisons_connection;  ///< The session must be reopened (lost, shutting down, or on a read-only server).
};

/// Classifies a SQLSTATE: connection loss and server shutdown (08xxx, 57P01-57P03) and a read-only server
/// (25006, e.g. a standby reached during a failover) are transient and need a new session; serialisation,
/// deadlock, lock-timeout, cancel and insufficient-resources states (40001, 40P01, 55P03, 57014, 53xxx) are
/// transient on the same session; authentication, missing database/table/function and privilege states
/// (28xxx, 3D000, 42P01, 3F000, 42883, 42501) are configuration; data and constraint states (22xxx, 23xxx) are
/// invalid input; anything else is fatal.
SqlstateClass ClassifySqlstate(std::string_view sqlstate);

}  // namespace eventlog::pg
