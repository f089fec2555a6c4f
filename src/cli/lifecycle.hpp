#pragma once

// The stop of a long-running command (`relay`, `serve`): its signals and the bound on a graceful stop.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <eventlog/observability/log.hpp>
#include <mutex>
#include <stop_token>
#include <thread>

namespace eventlog::cli {

/// The exit status of a relay or server whose graceful stop was cut short by RELAY_SHUTDOWN_TIMEOUT_MS: work in
/// flight was abandoned (a relay's batch stays in its delivery record for recovery), so a supervisor can tell it
/// from a clean stop (0) and from a second signal (130).
inline constexpr int kForcedStopExit = 3;

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and every thread it starts afterwards) and returns that
/// set, for a signal thread's sigtimedwait(). Call it before any thread starts: a thread that leaves them unblocked
/// would take a SIGTERM with its default action.
sigset_t BlockStopSignals();

/// Bounds a graceful stop: started by the first signal, it calls `abort` after `timeout` and then, if the relay has
/// still not returned `grace` later, exits the process with kForcedStopExit (a blocking ClickHouse request cannot be
/// interrupted; the batch in flight stays in its delivery record for the next relay). Owns its thread; destroying
/// it (when Run() has returned) wakes and joins the thread, which then does nothing more. Start() is called at most
/// once. Not copyable.
class ShutdownWatchdog {
public:
    ShutdownWatchdog(std::chrono::milliseconds timeout, std::chrono::milliseconds grace,
                     const char* timeout_event = "relay_shutdown_timeout")
        : timeout_(timeout), grace_(grace), timeout_event_(timeout_event) {}
    ShutdownWatchdog(const ShutdownWatchdog&) = delete;
    ShutdownWatchdog& operator=(const ShutdownWatchdog&) = delete;

    /// Starts the countdown; `abort` runs on the watchdog's thread.
    template <typename Abort>
    void Start(Abort abort) {
        thread_ = std::jthread([this, abort](std::stop_token stop) mutable {
            if (WaitUnlessStopped(stop, timeout_)) return;
            fired_.store(true);
            log::Warning(timeout_event_, {{"exit_status", static_cast<std::int64_t>(kForcedStopExit)}});
            abort();
            if (WaitUnlessStopped(stop, grace_)) return;
            _exit(kForcedStopExit);
        });
    }

    /// True once the timeout passed and the stop was forced.
    bool Fired() const noexcept { return fired_.load(); }

private:
    /// True when stop was requested before `duration` elapsed.
    bool WaitUnlessStopped(std::stop_token& stop, std::chrono::milliseconds duration) {
        std::unique_lock lock(mutex_);
        return wake_.wait_for(lock, stop, duration, [] { return false; }) || stop.stop_requested();
    }

    std::chrono::milliseconds timeout_;
    std::chrono::milliseconds grace_;
    const char* timeout_event_;
    std::atomic<bool> fired_{false};
    std::mutex mutex_;
    std::condition_variable_any wake_;
    std::jthread thread_;  // last: joined first, while the members it uses are alive
};

}  // namespace eventlog::cli
