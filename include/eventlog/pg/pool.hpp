#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <eventlog/core/error.hpp>
#include <eventlog/pg/connection.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace eventlog::pg {

/// Pool settings with documented defaults.
struct PoolOptions {
    ConnectOptions connect;                            ///< How each session is opened (search_path is pinned by Open).
    std::size_t max_size{8};                           ///< Sessions open at most (idle plus checked out); at least 1.
    std::chrono::milliseconds acquire_timeout{1'000};  ///< Bound on waiting for a free session.
};

/// No session became free within PoolOptions::acquire_timeout. Transient and harmless to the sessions: the caller
/// answers "busy, retry later" (HTTP 503 with Retry-After).
class PoolTimeoutError : public TransientError {
public:
    explicit PoolTimeoutError(const std::string& message) : TransientError(message, false) {}
};

/// A bounded set of PostgreSQL sessions shared by threads. Sessions are opened lazily up to max_size; a checked-out
/// session comes back when its Lease is destroyed, unless it is broken (Healthy() false) or was discarded, in which
/// case it is closed and its slot freed. Thread-safe; non-copyable, non-movable; every Lease must be destroyed
/// before the pool.
class Pool {
public:
    /// A checked-out session. Move-only; returns the session to its pool in a noexcept destructor.
    class Lease {
    public:
        Lease(Lease&& other) noexcept : pool_(other.pool_), connection_(other.connection_) {
            other.pool_ = nullptr;
            other.connection_ = nullptr;
        }
        Lease& operator=(Lease&&) = delete;
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        ~Lease();

        /// The session; valid until the Lease is destroyed.
        Connection& operator*() const noexcept { return *connection_; }
        Connection* operator->() const noexcept { return connection_; }
        /// Closes the session instead of returning it (use when its state is unknown, e.g. after an in-doubt commit).
        void Discard() noexcept { discard_ = true; }

    private:
        friend class Pool;
        Lease(Pool* pool, Connection* connection) : pool_(pool), connection_(connection) {}
        Pool* pool_;
        Connection* connection_;
        bool discard_{false};
    };

    explicit Pool(PoolOptions options);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// Checks out an idle session, opens a new one while below max_size, or waits up to acquire_timeout for one
    /// to come back. Throws PoolTimeoutError on timeout, and Connection::Open's errors when opening fails.
    Lease Acquire();
    /// Sessions currently open (idle plus checked out).
    std::size_t OpenCount() const;
    /// Sessions currently checked out.
    std::size_t InUse() const;

private:
    void Return(Connection* connection, bool discard) noexcept;

    PoolOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable returned_;
    std::vector<std::unique_ptr<Connection>> idle_;
    std::vector<std::unique_ptr<Connection>> busy_;
    std::size_t opening_{0};
};

}  // namespace eventlog::pg
