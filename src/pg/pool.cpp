#include <fmt/format.h>

#include <algorithm>
#include <eventlog/pg/pool.hpp>

namespace eventlog::pg {

Pool::Lease::~Lease() {
    if (pool_ != nullptr) pool_->Return(connection_, discard_);
}

Pool::Pool(PoolOptions options) : options_(std::move(options)) {
    if (options_.max_size == 0) throw ConfigError("pool: max_size must be at least 1");
}

Pool::~Pool() = default;

Pool::Lease Pool::Acquire() {
    std::unique_lock lock(mutex_);
    const auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
    for (;;) {
        while (!idle_.empty()) {
            std::unique_ptr<Connection> session = std::move(idle_.back());
            idle_.pop_back();
            if (session->ClosedWhileIdle()) continue;  // terminated while idle: closed here, never handed out
            busy_.push_back(std::move(session));
            return Lease(this, busy_.back().get());
        }
        if (busy_.size() + opening_ < options_.max_size) break;
        if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
            busy_.size() + opening_ >= options_.max_size) {
            throw PoolTimeoutError(fmt::format("pool: no PostgreSQL session free within {} ms ({} in use)",
                                               options_.acquire_timeout.count(), busy_.size()));
        }
    }
    // Open outside the lock: connecting can take up to connect_timeout and must not stall returns.
    ++opening_;
    lock.unlock();
    std::unique_ptr<Connection> opened;
    try {
        opened = std::make_unique<Connection>(Connection::Open(options_.connect));
    } catch (...) {
        lock.lock();
        --opening_;
        returned_.notify_one();
        throw;
    }
    lock.lock();
    --opening_;
    busy_.push_back(std::move(opened));
    return Lease(this, busy_.back().get());
}

void Pool::Return(Connection* connection, bool discard) noexcept {
    std::unique_ptr<Connection> closing;  // closed after the lock is released
    {
        const std::lock_guard lock(mutex_);
        const auto it = std::find_if(busy_.begin(), busy_.end(), [&](const auto& c) { return c.get() == connection; });
        if (it == busy_.end()) return;
        std::unique_ptr<Connection> owned = std::move(*it);
        busy_.erase(it);
        if (discard || !owned->Healthy()) {
            closing = std::move(owned);
        } else {
            idle_.push_back(std::move(owned));
        }
    }
    returned_.notify_one();
}

std::size_t Pool::OpenCount() const {
    const std::lock_guard lock(mutex_);
    return idle_.size() + busy_.size() + opening_;
}

std::size_t Pool::InUse() const {
    const std::lock_guard lock(mutex_);
    return busy_.size();
}

}  // namespace eventlog::pg
