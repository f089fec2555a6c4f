#include "cli/lifecycle.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <eventlog/observability/log.hpp>

namespace eventlog::cli {
namespace {

/// How long after `abort` the process waits for `run` to return before it exits by itself.
constexpr std::chrono::milliseconds kAbortGrace{200};

sigset_t StopSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

void BlockStopSignals() {
    const sigset_t set = StopSignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void UnblockStopSignals() {
    const sigset_t set = StopSignals();
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

Lifecycle::Lifecycle(std::string name, std::chrono::milliseconds timeout)
    : name_(std::move(name)), timeout_(timeout), set_(StopSignals()) {
    BlockStopSignals();
}

Lifecycle::~Lifecycle() = default;

int Lifecycle::Run(const LifecycleSteps& steps) {
    bool cut_short = false;
    {
        // Declared so that the bound's thread is joined after the signal thread (which may start it) and both
        // before `flush` and before the objects the steps use go away.
        std::jthread bound;  // written only by the signal thread, read by its destructor after that thread's join
        const std::jthread signals([&](const std::stop_token& stop) {
            int received = 0;
            while (!stop.stop_requested()) {
                timespec wait{0, 100'000'000};
                siginfo_t info;
                const int sig = sigtimedwait(&set_, &info, &wait);
                if (sig < 0 || stop.stop_requested()) continue;
                if (sig == SIGHUP) {
                    log::Info(name_ + "_sighup",
                              {{"action", std::string("nothing to reload; configuration is read at start")}});
                    continue;
                }
                if (++received == 1) {
                    log::Info(name_ + "_stopping", {{"signal", static_cast<std::int64_t>(sig)},
                                                    {"timeout_ms", static_cast<std::int64_t>(timeout_.count())}});
                    steps.stop();
                    bound = std::jthread([this, &steps](const std::stop_token& s) { Bound(s, steps); });
                } else {
                    log::Warning(name_ + "_exit_now", {{"signal", static_cast<std::int64_t>(sig)}});
                    _exit(130);
                }
            }
        });
        // If it throws, the threads are joined on the way out (signals first, then the bound) and the error goes on.
        cut_short = steps.run();
    }
    if (steps.flush) steps.flush();
    return forced_.load() || cut_short ? kForcedStopExit : 0;
}

void Lifecycle::Bound(const std::stop_token& stop, const LifecycleSteps& steps) {
    if (WaitUnlessStopped(stop, timeout_)) return;
    forced_.store(true);
    log::Warning(name_ + "_shutdown_timeout", {{"exit_status", static_cast<std::int64_t>(kForcedStopExit)}});
    steps.abort();
    if (WaitUnlessStopped(stop, kAbortGrace)) return;
    _exit(kForcedStopExit);
}

bool Lifecycle::WaitUnlessStopped(const std::stop_token& stop, std::chrono::milliseconds duration) {
    std::unique_lock lock(mutex_);
    return wake_.wait_for(lock, stop, duration, [] { return false; }) || stop.stop_requested();
}

}  // namespace eventlog::cli
