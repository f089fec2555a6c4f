#pragma once

// The life of a long-running command (`relay`, `serve`) in one place, as pgbouncer's sig.c: signals blocked before
// any thread starts, then run; on the first SIGTERM/SIGINT stop accepting and drain, bounded; flush the exporters;
// exit (non-zero when the stop was forced).

#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

namespace eventlog::cli {

/// The exit status of a relay or server whose graceful stop was cut short by RELAY_SHUTDOWN_TIMEOUT_MS: work in
/// flight was abandoned (a relay's batch stays in its delivery record for recovery), so a supervisor can tell it
/// from a clean stop (0) and from a second signal (130).
inline constexpr int kForcedStopExit = 3;

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts afterwards. `main` calls it
/// first; Lifecycle's constructor again (idempotent).
void BlockStopSignals();
/// Gives them back their default action (commands that do not run a Lifecycle: Ctrl-C ends them at once).
void UnblockStopSignals();

/// What a command does at each step of its life. Every callback but `run` is called from another thread.
struct LifecycleSteps {
    /// The command's work; returns when it is done or stopped, true when it cut its own stop short (a relay that
    /// left its batch to recovery because RELAY_SHUTDOWN_TIMEOUT_MS passed).
    std::function<bool()> run;
    /// The first signal: stop accepting work and drain what is in flight (must return at once).
    std::function<void()> stop;
    /// RELAY_SHUTDOWN_TIMEOUT_MS after the first signal: give up what is in flight (must return at once).
    std::function<void()> abort;
    /// After `run` returned: send what the exporters (Sentry, traces) still hold, each within its own bound.
    std::function<void()> flush;
};

/// One per process, created in the command before any thread starts: SIGTERM, SIGINT and SIGHUP are blocked (by
/// `main`, and again here) in the calling thread and so in every thread started afterwards (one that left them
/// unblocked would take a SIGTERM with its default action, and the process would die without draining). Run() then
/// receives them on its own thread: the first SIGTERM/SIGINT logs `<name>_stopping` and calls `stop`, and starts the
/// stop's bound, which calls `abort` after `timeout` (`<name>_shutdown_timeout`) and exits the process with
/// kForcedStopExit if `run` has still not returned 200 ms later; a second signal exits at once with 130
/// (`<name>_exit_now`); SIGHUP is logged (nothing reloads). Not copyable; Run() once.
class Lifecycle {
public:
    Lifecycle(std::string name, std::chrono::milliseconds timeout);
    ~Lifecycle();
    Lifecycle(const Lifecycle&) = delete;
    Lifecycle& operator=(const Lifecycle&) = delete;

    /// Runs the steps and returns the exit status: 0 after a clean stop, kForcedStopExit when the stop was forced
    /// (the bound passed, or `run` says it cut its stop short). The signal thread and the bound's thread are joined
    /// before `flush` runs.
    int Run(const LifecycleSteps& steps);

private:
    void Signals(const std::stop_token& stop, const LifecycleSteps& steps);
    void Bound(const std::stop_token& stop, const LifecycleSteps& steps);
    /// True when stop was requested before `duration` elapsed.
    bool WaitUnlessStopped(const std::stop_token& stop, std::chrono::milliseconds duration);

    std::string name_;
    std::chrono::milliseconds timeout_;
    sigset_t set_{};
    std::atomic<bool> forced_{false};
    std::mutex mutex_;
    std::condition_variable_any wake_;
};

}  // namespace eventlog::cli
